"""Per-server FCFS admission of the live engine (docs/model.md §11, docs/contracts.md §8).

Real PETALS has no admission queue shared across servers: each server allocates its own KV cache
(``memory_cache.py`` waits per server), and a client retries an allocation that failed at its back-off
instants.  The live engine models this with one FIFO queue of waiting session ids per server:

* a committed session joins the tail of the queue of every server of its route;
* it is *admissible* at t when it is at the head of the queue of every server it needs and its
  declared bytes fit on every hop now (no overtaking on a shared server, so no starvation; sessions
  on disjoint servers never block each other);
* without back-off an admissible session is admitted at t; with back-off at its first PETALS retry
  instant (from its arrival) at or after t (:func:`~distllm_env.backoff.first_retry_at_or_after_s`),
  keeping its place at the heads meanwhile;
* admissibility can only change when bytes are released on a server (its head is examined), when a
  session is admitted (the new heads of its servers are examined) or at a session's own retry instant,
  so each event costs O(hops of the sessions examined), not O(waiting sessions).

``queued_bytes[j]`` (declared bytes of the sessions queued on server j) is what the router's view
subtracts from the predicted free bytes (:class:`~distllm_env.live.sessions.LiveBook`).
"""

from __future__ import annotations

from collections import deque

from ..backoff import backoff_instant_s, first_retry_at_or_after_s

#: the admission rule's name in the run header / meta of live runs (docs/contracts.md §6, §8)
ADMISSION_RULE = "per-server-fifo"


class PerServerFifo:
    """Per-server FIFO admission for ``engine`` (a :class:`~distllm_env.live.engine.LiveSimulation`).

    Uses the engine's ``sessions``, ``used_bytes``, ``capacity_bytes``, ``backoff``, ``_true``
    (arrival times), ``_admit(t, session)`` and ``_push(t, RETRY, sid, 0)``."""

    def __init__(self, engine, retry_kind: int):
        self._eng = engine
        self._retry_kind = retry_kind
        n = len(engine.capacity_bytes)
        self.queues: list[deque[int]] = [deque() for _ in range(n)]
        #: declared bytes of the sessions waiting in each server's queue
        self.queued_bytes = [0] * n
        self._retry_s: dict[int, float] = {}      # session → its pending retry instant
        #: bumped whenever a queue changes (cache key of the view's profiles)
        self.version = 0
        self.waiting = 0

    def enqueue(self, t: float, sid: int) -> None:
        """Committed session ``sid`` joins the tail of its servers' queues (admitted now if admissible)."""
        s = self._eng.sessions[sid]
        for j, need in zip(s.servers, s.need_bytes):
            self.queues[j].append(sid)
            self.queued_bytes[j] += need
        self.version += 1
        self.waiting += 1
        self._examine(t, [sid])

    def released(self, t: float, servers) -> None:
        """Bytes were freed on ``servers`` at ``t``: examine their heads."""
        self._examine(t, [q[0] for q in (self.queues[j] for j in servers) if q])

    def retry(self, t: float, sid: int) -> None:
        """The PETALS retry instant of ``sid`` scheduled earlier."""
        if self._retry_s.get(sid) == t:
            del self._retry_s[sid]
        self._examine(t, [sid])

    def examine_all(self, t: float) -> None:
        """Examine every queue head (after memory changed outside a release, e.g. churn)."""
        self._examine(t, [q[0] for q in self.queues if q])

    def _examine(self, t: float, todo: list[int]) -> None:
        eng = self._eng
        sessions, queues, cap, used = eng.sessions, self.queues, eng.capacity_bytes, eng.used_bytes
        while todo:
            sid = todo.pop()
            s = sessions[sid]
            servers = s.servers
            if not all(queues[j] and queues[j][0] == sid for j in servers):
                continue
            if not all(used[j] + need <= cap[j] for j, need in zip(servers, s.need_bytes)):
                continue
            if eng.backoff:
                r = first_retry_at_or_after_s(eng._true[sid].arrival_s, t)
                if r > t:
                    if self._retry_s.get(sid) != r:
                        self._retry_s[sid] = r
                        eng._push(r, self._retry_kind, sid, 0)
                    continue
            self._retry_s.pop(sid, None)
            for j, need in zip(servers, s.need_bytes):
                queues[j].popleft()
                self.queued_bytes[j] -= need
            self.version += 1
            self.waiting -= 1
            eng._admit(t, s)
            todo.extend(queues[j][0] for j in servers if queues[j])


def next_open_attempt(arrival_s: float, now_s: float, attempt: int, timeout_s: float) -> tuple[int, float] | None:
    """The next try to open a session that found no chain at ``now_s`` (churn only, docs/model.md §12):
    ``(k, arrival_s + backoff_instant_s(k))`` for the smallest k > ``attempt`` whose PETALS retry
    instant is later than ``now_s``, or ``None`` when that instant is more than ``timeout_s`` (the
    session timeout) after the arrival: the request is then rejected ``no_feasible_chain``."""
    k = attempt + 1
    while arrival_s + backoff_instant_s(k) <= now_s:
        k += 1
    t = arrival_s + backoff_instant_s(k)
    if t - arrival_s > timeout_s:
        return None
    return k, t


def admission_meta(sim, reservation: str) -> dict:
    """The run meta's ``reservation`` and ``admission`` keys (docs/contracts.md §6): a run whose
    sessions are admitted by :class:`PerServerFifo` (the live engine's ``serial`` / ``batched``
    models, and every model under churn) has ``admission: per-server-fifo`` and ``reservation: null``
    (``simulator.reservation`` is ignored there); otherwise ``admission`` is the reservation mode."""
    if getattr(sim, "admission_rule", reservation) == ADMISSION_RULE:
        return {"reservation": None, "admission": ADMISSION_RULE}
    return {"reservation": reservation, "admission": reservation}


def admission_label(meta: dict) -> str:
    """``"admission per-server-fifo"`` or ``"reservation <mode>"`` for a run header."""
    if meta.get("admission") == ADMISSION_RULE:
        return f"admission {ADMISSION_RULE}"
    return f"reservation {meta.get('reservation')}"


__all__ = ["ADMISSION_RULE", "PerServerFifo", "admission_label", "admission_meta", "next_open_attempt"]

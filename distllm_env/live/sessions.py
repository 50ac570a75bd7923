"""Live sessions and the memory view the router reads under the live engine.

A :class:`Session` is the state machine waiting → prefill → decode(k tokens done) → done of one
committed request (docs/architecture.md "How the core grows").  :class:`LiveBook` answers the
:class:`~distllm_env.reservations.ReservationBook` queries of :class:`~distllm_env.view.ClusterView`
from the memory held NOW and from PREDICTED completions (docs/contracts.md §8): a session is
predicted to end after its remaining DECLARED tokens at its current per-token rate, so the view never
offers a true output length.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

import numpy as np

from ..perf import hop_compute_s, prefill_comm_s
from ..reservations import wait_for

WAITING, PREFILL, DECODE, DONE = 0, 1, 2, 3


class Session:
    """One committed request.  Times in seconds (absolute), memory in bytes.

    ``comm_prefill_s`` / ``comp_prefill_s`` (per hop) are t^I_cj and m_ij·τ^I_j(l_in);
    ``comm_decode_s`` / ``comp_decode_s`` are t_cj and m_ij·τ_j (docs/model.md §4.3).
    ``tokens`` is the TRUE output length (engine-private); ``declared`` the declared one."""

    __slots__ = ("rid", "route", "servers", "first_blocks", "last_blocks", "blocks", "need_bytes",
                 "comm_prefill_s", "comm_decode_s", "comp_prefill_s", "comp_decode_s", "client_prefill_s",
                 "client_token_s", "tokens", "declared", "lead_s", "state", "done_tokens", "start_s",
                 "first_token_s", "last_token_s", "completion_s", "static_first_s", "static_token_s",
                 "per_block_bytes")

    def __init__(self, rid, route, per_block_bytes, comm_prefill_s, comm_decode_s, comp_prefill_s, comp_decode_s,
                 client_prefill_s, client_token_s, tokens, declared, lead_s):
        self.rid = rid
        self.route = route
        self.servers = tuple(h.server for h in route.hops)
        self.first_blocks = tuple(h.first_block for h in route.hops)
        self.last_blocks = tuple(h.last_block for h in route.hops)
        self.blocks = tuple(h.blocks for h in route.hops)
        self.per_block_bytes = per_block_bytes
        self.need_bytes = tuple(m * per_block_bytes for m in self.blocks)
        self.comm_prefill_s = comm_prefill_s
        self.comm_decode_s = comm_decode_s
        self.comp_prefill_s = comp_prefill_s
        self.comp_decode_s = comp_decode_s
        self.client_prefill_s = client_prefill_s
        self.client_token_s = client_token_s
        self.tokens = tokens
        self.declared = declared
        self.lead_s = lead_s
        self.state = WAITING
        self.done_tokens = 0
        self.start_s = self.first_token_s = self.last_token_s = self.completion_s = math.nan
        # uncontended times (the analytic closed form's terms)
        self.static_first_s = float(sum(comm_prefill_s) + sum(comp_prefill_s)) + client_prefill_s
        self.static_token_s = float(sum(comm_decode_s) + sum(comp_decode_s)) + client_token_s

    @property
    def hops(self) -> tuple[tuple[int, int], ...]:
        return tuple(zip(self.servers, self.need_bytes))

    def per_token_rate_s(self) -> float:
        """Current per-token rate: the observed mean decode time once two tokens are out, else the
        uncontended Σ_hops (t_cj + m·τ_j)."""
        if self.done_tokens >= 2:
            return (self.last_token_s - self.first_token_s) / (self.done_tokens - 1)
        return self.static_token_s

    def predicted_end_s(self, now_s: float) -> float:
        """Predicted completion from what a router may know: remaining DECLARED tokens × current
        per-token rate (docs/contracts.md §7).  Never earlier than ``now_s``."""
        if self.state == DONE:
            return self.completion_s
        if self.done_tokens == 0:
            first = self.start_s + self.lead_s + self.static_first_s
            return max(now_s, first + (self.declared - 1) * self.static_token_s)
        left = max(self.declared - self.done_tokens, 0)
        return max(now_s, self.last_token_s + left * self.per_token_rate_s())


def build_session(inst, request, route, part, lead_s: float) -> Session:
    """The :class:`Session` of ``request`` (its own ``output_tokens`` / ``declared_output_tokens``) on
    ``route``; ``part`` is its split :class:`~distllm_env.records.ClientPart` or ``None``.  Costs:
    docs/model.md §4.1–§4.2; bytes per block: §2.2 at the DECLARED length."""
    c = request.client
    servers = np.fromiter((h.server for h in route.hops), dtype=np.int64, count=len(route.hops))
    blocks = np.fromiter((h.blocks for h in route.hops), dtype=np.int64, count=len(route.hops))
    comm_p = prefill_comm_s(inst.rtt_s[c, servers], inst.prefill_overhead_slope_s,
                            inst.prefill_overhead_intercept_s, request.prompt_tokens)
    comp_p = hop_compute_s(inst.tau_prefill_s(request.prompt_tokens, servers), blocks)
    comm_d = inst.token_cost_s[c, servers]
    comp_d = hop_compute_s(inst.tau_decode_s[servers], blocks)
    per_block = inst.model.kv_bytes_per_block(request.prompt_tokens, request.declared_output_tokens)
    return Session(request.id, route, per_block, comm_p.tolist(), comm_d.tolist(), comp_p.tolist(),
                   comp_d.tolist(), part.prefill_s if part else 0.0, part.per_token_s if part else 0.0,
                   int(request.output_tokens), int(request.declared_output_tokens), lead_s)


def closed_form(inst, s: Session, request) -> tuple[float, float]:
    """(first-token offset, service time) of ``s`` at ``request.output_tokens``, computed exactly as
    the analytic engine does (docs/model.md §4.3; same operations, so bit-identical)."""
    first, service = inst.chain_times_s(request.client, np.asarray(s.servers, dtype=np.int64),
                                        np.asarray(s.blocks, dtype=np.int64), request.prompt_tokens, s.tokens)
    if s.client_prefill_s or s.client_token_s:
        first += s.client_prefill_s
        service += s.client_prefill_s + (s.tokens - 1) * s.client_token_s
    return first, service


class LiveBook:
    """The :class:`~distllm_env.reservations.ReservationBook` read side under the live engine:
    bytes held now (exact) and predicted releases (:meth:`Session.predicted_end_s`), less the declared
    bytes of the sessions already waiting in server j's admission queue (``q_j``,
    :class:`~distllm_env.live.admission.PerServerFifo`): a new session queues behind them, so the
    predicted free bytes of j are max(free_j(t) − q_j, 0) before the last predicted release of the
    sessions holding j, and the full free_j after it (when j is predicted empty its queue is assumed
    drained).  docs/contracts.md §8."""

    mode = "live"

    def __init__(self, engine):
        self._engine = engine
        self.capacity = [int(c) for c in engine.capacity_bytes]
        # per-server profile cache.  A profile changes only when the engine pops or pushes an event
        # (admission pushes a step, release and progress happen in popped events), so it stays valid
        # while (now, pushes so far, events queued) is unchanged: computed once per decision
        self._profiles: dict[int, tuple[tuple, list[float], list[int]]] = {}

    def advance(self, now: float) -> None:
        """Nothing to forget: the live engine releases memory at completion events."""

    def used_bytes(self, server: int, t: float) -> int:
        return self.capacity[server] - self.free_bytes(server, t)

    def _profile(self, server: int, now: float) -> tuple[list[float], list[int]]:
        """Cached :meth:`free_profile` as plain lists (times_s, free_bytes)."""
        eng = self._engine
        adm = eng.admission
        key = (now, eng._seq, len(eng._events), adm.version)
        hit = self._profiles.get(server)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        sessions = eng.sessions
        ends = sorted((sessions[rid].predicted_end_s(now), sessions[rid].need_bytes[h])
                      for rid, h in eng.holders[server].items())
        times = [float(now)]
        free = [self.capacity[server] - int(eng.used_bytes[server])]
        acc = free[0]
        for e, b in ends:        # exact integer running sum: the same values as np.cumsum in int64
            acc += b
            times.append(float(e))
            free.append(acc)
        q = adm.queued_bytes[server]
        if q:                    # queued sessions come first (per-server FIFO), until j is predicted empty
            free[:-1] = [f - q if f > q else 0 for f in free[:-1]]
        self._profiles[server] = (key, times, free)
        return times, free

    def free_bytes(self, server: int, t: float) -> int:
        times, free = self._profile(server, self._engine.now_s)
        k = bisect_right(times, t) - 1
        return int(free[max(k, 0)])

    def stays_free_bytes(self, server: int, now: float) -> int:
        eng = self._engine
        return max(int(self.capacity[server] - eng.used_bytes[server] - eng.admission.queued_bytes[server]), 0)

    def free_profile(self, server: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        """``(times_s, free_bytes)`` from the predicted completions of the sessions holding memory on
        ``server`` now; non-decreasing in both.  Fresh arrays (the cache stays private)."""
        times, free = self._profile(server, now)
        return np.array(times, dtype=float), np.array(free, dtype=np.int64)

    def wait_s(self, server: int, now: float, need) -> np.ndarray:
        return wait_for(self.free_profile(server, now), need)

    def _wait_one_s(self, server: int, now: float, need: int) -> float:
        """:meth:`wait_s` for one scalar ``need`` (same value as :func:`wait_for`: 0 when the bytes
        are free now, ``inf`` when they never are)."""
        eng = self._engine
        if need <= self.capacity[server] - eng.used_bytes[server] - eng.admission.queued_bytes[server]:
            return 0.0
        times, free = self._profile(server, now)
        k = bisect_left(free, need)
        return times[k] - times[0] if k < len(free) else math.inf

    def earliest_start(self, now: float, hops, duration: float) -> float | None:
        """Predicted start: the latest predicted wait over the hops (``None`` if a hop never fits)."""
        start = now
        for j, need in hops:
            if need > self.capacity[j]:
                return None
            w = self._wait_one_s(j, now, need)
            if not math.isfinite(w):
                return None
            start = max(start, now + w)
        return start

    def earliest_starts(self, now: float, hop_sets, durations) -> list[float | None]:
        return [self.earliest_start(now, h, d) for h, d in zip(hop_sets, durations)]

    def fits(self, t: float, hops, duration: float) -> bool:
        return all(self.free_bytes(j, t) >= need for j, need in hops)


__all__ = ["DECODE", "DONE", "LiveBook", "PREFILL", "Session", "WAITING", "build_session", "closed_form"]

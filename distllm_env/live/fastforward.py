"""Fast-forward of sessions between events under churn (docs/model.md §12; docs/architecture.md).

Without churn the live engine serves a session's steps inline (``LiveSimulation._chain``) as long as
no queued event could come first or interfere.  :func:`serve_inline` is the same rule for
:class:`~distllm_env.live.churn.ChurnSimulation` under ``serial`` and ``independent``, where a step is
two events (its arrival at a server, ``STEP``, and its end, ``STEP_DONE``, so that a server event can
drop it):

* a step is served inline while its end lies strictly before the limit, and the session's next step
  while its arrival does; the first limit is the next queued event (the queue would pop them next
  anyway);
* once that is not enough, the limit is extended to the next *control* event (any queued event that
  is neither a step, a step's end nor an iteration: failover attempts, rebalancing checks, server
  arrivals, admissions, releases, arrivals, and the server events — fail, leave, join, reload done —
  of servers some session holds or waits for, or joins when the placement policy has an online hook:
  only those change which servers a session can use, which sessions hold a server, or are decisions
  that read the sessions' state; server events of idle servers are skipped, :func:`soft_limit_s`),
  and, under ``serial``, only
  while ``s`` is the only session holding each of its servers and before the earliest possible end of
  any other session (an end may admit a session onto ``s``'s servers).  Under ``independent`` a step
  never waits for another session, so only control events limit it.

Where it stops, the session is left exactly as the event path would leave it at that instant: a
step in service has its ``STEP_DONE`` queued and its ``_serving`` entry set; else its next ``STEP`` is
queued (or its ``END``).  The same floats are computed in the same order as the event path, and the
tie-break counter advances by one per push the event path would have made, so records are identical
(tests/test_churn_fastforward.py compares with ``ChurnSimulation._fast_forward = False``).  A
server event on the session's own servers is a control event, so a failure or leave always finds the
session in the state the event path gives it.

Costs: O(1) per inline step; each extension scans the queued server events up to the limit.
"""

from __future__ import annotations

import heapq
import math

from .engine import END, STEP
from .sessions import DECODE

STEP_DONE, _HB = 0.5, 1 << 20       # live/churn.py's step-end kind and epoch packing (it imports them from here)
SERVER = 7                          # live/churn.py's server-event kind (codes 0 / 3: join)


def independent_limit_s(sim, t0: float) -> float:
    """The next control event's time while processing an event at ``t0`` (``inf`` when none)."""
    control = sim._control
    while control and control[0] < t0:        # popped already (the queue is processed in time order)
        heapq.heappop(control)
    return control[0] if control else math.inf


def serve_inline(sim, t: float, s, h: int, ep: int) -> None:
    """Serve the step of hop ``h`` of session ``s`` (epoch ``ep``) arriving at ``t`` and the session's
    following steps inline under the rules of the module docstring; queue what remains.  The caller
    has checked the epoch, that the session is not draining a leaving server and that the server
    model is ``serial`` or ``independent``."""
    events, servers, state = sim._events, s.servers, sim.state
    serial = sim._serial
    busy_until = sim.busy_until_s
    log = sim.step_log
    rid = s.rid
    n = len(servers)
    prefill = s.done_tokens == 0
    comp = s.comp_prefill_s if prefill else s.comp_decode_s
    comm = s.comm_prefill_s if prefill else s.comm_decode_s
    limit = events[0][0] if events else math.inf
    t0 = t
    seq = sim._seq                         # the tie-break counter, written back before any push
    # shared first server (cheap pre-check of "alone"): the extended limit would be -inf
    extended = serial and len(sim.holders[servers[0]]) != 1
    while True:
        j = servers[h]
        assert state[j] == 0, f"step of session {rid} reached server {j}, which is not up"
        if serial:
            busy = float(busy_until[j])
            done = (t if t > busy else busy) + comp[h]
            busy_until[j] = done
        else:
            done = t + comp[h]
        if not done < limit:
            if not extended:
                extended = True
                limit = max(limit, _extended_limit_s(sim, s, t0, serial))
            if not done < limit:           # in service at the limit: its end is an event
                sim._seq = seq
                sim._serving[rid] = (j, t)
                sim._push_base(done, STEP_DONE, rid, ep * _HB + h)
                return
        seq += 1                           # the STEP_DONE push of the event path
        if log is not None:
            log.append((j, t, done))
        if h + 1 < n:
            h += 1
            t = done + comm[h]
        else:
            s.done_tokens += 1
            s.last_token_s = done
            if prefill:
                prefill = False
                s.first_token_s = done
                s.state = DECODE
                comp, comm = s.comp_decode_s, s.comm_decode_s
            if s.done_tokens >= s.tokens:
                sim._seq = seq
                s.completion_s = done
                sim._push_base(done, END, rid, 0)
                return
            h = 0
            t = done + s.client_token_s + comm[0]
        if not t < limit:
            if not extended:
                extended = True
                limit = max(limit, _extended_limit_s(sim, s, t0, serial))
            if not t < limit:
                sim._seq = seq
                sim._push(t, STEP, rid, h)        # (the churn engine's push adds the epoch)
                return
        seq += 1                           # the STEP push of the event path


def _extended_limit_s(sim, s, t0: float, serial: bool) -> float:
    limit = sim._alone_limit_s(s, t0) if serial else independent_limit_s(sim, t0)
    return soft_limit_s(sim, t0, limit)


def drop_past_soft(sim, t0: float) -> int:
    """Forget the entries of ``sim._soft`` (sorted queued server events) earlier than ``t0``: the
    queue runs in time order, so they were processed.  Returns the index of the first one left."""
    soft, i = sim._soft, sim._soft_i
    n = len(soft)
    while i < n and soft[i][0] < t0:
        i += 1
    if i > 4096:
        del soft[:i]
        i = 0
    sim._soft_i = i
    return i


def soft_limit_s(sim, t0: float, limit: float) -> float:
    """``limit`` lowered to the first queued server event (``SERVER``, or ``READY`` after a reload)
    before it that is a control event: one of a server some session holds or waits for (it may fail
    sessions over, whose routing reads every session's state, or admit one), and any join when the
    placement policy has an online hook (it reads the view).  Server events of idle servers change
    no session and admit none, and an idle server stays idle until a control event: they are skipped."""
    soft = sim._soft
    i, n = drop_past_soft(sim, t0), len(soft)
    holders, queues = sim.holders, sim.admission.queues
    hook = sim.external_placement or getattr(sim.placer, "place_joining", None) is not None
    while i < n:
        t, kind, j, _, b = soft[i]
        if t >= limit:
            break
        if holders[j] or queues[j] or (hook and kind == SERVER and b in (0, 3)):
            return t
        i += 1
    return limit


__all__ = ["drop_past_soft", "independent_limit_s", "serve_inline", "soft_limit_s"]

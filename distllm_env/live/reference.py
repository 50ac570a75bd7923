"""A deliberately naive token-level reference of the live engine's ``serial`` and ``batched`` models.

Used by tests only (tests/test_live_reference.py): written independently of
:mod:`distllm_env.live.engine` — explicit per-server FIFO queues of step objects, two events per step
(the step reaches the server; the server finishes its current work), a sorted event list instead of
a heap, PETALS retry instants walked one by one (:func:`~distllm_env.backoff.backoff_instants_s`),
and the batch's distinct blocks counted with a set.  It is slow (O(n) per event) on purpose.

Semantics (docs/simulator.md "The live engine"): memory for prompt + declared output × m_ij per hop,
taken at admission, released at the true completion; per-server FCFS admission — a waiting
session is admitted when it fits and no EARLIER waiting session needs one of its servers (found by
a full scan of the waiting list in commit order at every event; back-off: at the session's next
retry instant, during which it keeps blocking its servers); a token's step on hop h reaches the server after the hop's communication cost and
takes m·τ^I (first token) or m·τ (decode) under ``serial``; under ``batched`` the steps waiting at an
iteration boundary run together for overhead + max(τ_j·|blocks touched|, compute).
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field

from ..backoff import backoff_instants_s

# event order at equal times (same as the engine's)
_ORDER = {"release": 0, "arrive": 1, "done": 2, "boundary": 3, "retry": 4, "request": 6}


@dataclass
class RefStep:
    session: int
    hop: int
    token: int


@dataclass
class RefSession:
    rid: int
    arrival_s: float
    servers: list
    spans: list            # (first_block, last_block) per hop
    need: list             # bytes per hop
    comm_prefill: list
    comm_decode: list
    comp_prefill: list
    comp_decode: list
    tokens: int
    lead_s: float
    start_s: float = float("nan")
    first_token_s: float = float("nan")
    completion_s: float = float("nan")
    token_times: list = field(default_factory=list)


def reference_run(sessions: list[RefSession], capacity_bytes, server_model: str, backoff: bool,
                  tau_decode_s, peak_flops, flops_per_token_per_block: float, overhead_s: float = 0.0,
                  retry_instants=backoff_instants_s):
    """Run ``sessions`` (committed in list order at their ``arrival_s``) and fill in their times.
    Returns the memory trace ``[(time_s, server, held_bytes)]`` after every change.  Plain arithmetic
    only, so :class:`fractions.Fraction` inputs (with ``retry_instants`` yielding Fractions) give the
    exact times (tests/test_live_reference.py)."""
    events: list = []
    counter = itertools.count()

    def add(t, kind, payload):
        # ties: by kind, then steps by session id (FIFO across sessions in request-id order), then FIFO
        sid = payload.session if isinstance(payload, RefStep) else 0
        bisect.insort(events, (t, _ORDER[kind], sid, next(counter), kind, payload))

    n_srv = len(capacity_bytes)
    held = [0] * n_srv
    queue: list[RefSession] = []            # waiting sessions, commit order
    retry_at: dict = {}                       # session id → its scheduled retry instant
    server_queue: list[list[RefStep]] = [[] for _ in range(n_srv)]
    in_service: list[list[RefStep]] = [[] for _ in range(n_srv)]
    boundary_pending = [False] * n_srv
    trace = []
    by_id = {s.rid: s for s in sessions}
    for s in sessions:
        add(s.arrival_s, "request", s.rid)

    def fits(s):
        return all(held[j] + b <= capacity_bytes[j] for j, b in zip(s.servers, s.need))

    def admit(t, s):
        s.start_s = t
        for j, b in zip(s.servers, s.need):
            held[j] += b
            trace.append((t, j, held[j]))
        add(t + s.lead_s + s.comm_prefill[0], "arrive", RefStep(s.rid, 0, 0))

    def try_admit(t):
        claimed = set()                       # servers needed by an earlier session still waiting
        for s in list(queue):
            mine = set(s.servers)
            if mine & claimed or not fits(s):
                claimed |= mine
                continue
            if backoff:
                r = next(s.arrival_s + x for x in retry_instants() if not s.arrival_s + x < t)
                if r > t:
                    if retry_at.get(s.rid) != r:
                        retry_at[s.rid] = r
                        add(r, "retry", s.rid)
                    claimed |= mine
                    continue
            queue.remove(s)
            admit(t, s)

    def step_cost(step):
        s = by_id[step.session]
        return s.comp_prefill[step.hop] if step.token == 0 else s.comp_decode[step.hop]

    def finish(t, step):
        s = by_id[step.session]
        if step.hop + 1 < len(s.servers):
            comm = s.comm_prefill if step.token == 0 else s.comm_decode
            add(t + comm[step.hop + 1], "arrive", RefStep(s.rid, step.hop + 1, step.token))
            return
        s.token_times.append(t)
        if step.token == 0:
            s.first_token_s = t
        if step.token + 1 == s.tokens:
            s.completion_s = t
            add(t, "release", s.rid)
        else:
            add(t + s.comm_decode[0], "arrive", RefStep(s.rid, 0, step.token + 1))

    def start_work(t, j):
        if server_model == "serial":
            step = server_queue[j].pop(0)
            in_service[j] = [step]
            add(t + step_cost(step), "done", j)
            return
        batch, server_queue[j] = server_queue[j], []
        in_service[j] = batch
        blocks = set()
        compute = 0.0
        for st in batch:
            s = by_id[st.session]
            first, last = s.spans[st.hop]
            blocks.update(range(first, last + 1))
            if st.token == 0:
                compute += s.comp_prefill[st.hop]
            else:
                compute += (last - first + 1) * flops_per_token_per_block / peak_flops[j]
        add(t + overhead_s + max(tau_decode_s[j] * len(blocks), compute), "done", j)

    while events:
        t, _, _, _, kind, payload = events.pop(0)
        if kind == "request":
            queue.append(by_id[payload])
            try_admit(t)
        elif kind == "retry":
            if retry_at.get(payload) == t:
                del retry_at[payload]
            try_admit(t)
        elif kind == "release":
            s = by_id[payload]
            for j, b in zip(s.servers, s.need):
                held[j] -= b
                trace.append((t, j, held[j]))
            try_admit(t)
        elif kind == "arrive":
            j = by_id[payload.session].servers[payload.hop]
            server_queue[j].append(payload)
            if not in_service[j] and not boundary_pending[j]:
                if server_model == "serial":
                    start_work(t, j)
                else:
                    boundary_pending[j] = True
                    add(t, "boundary", j)
        elif kind == "boundary":
            boundary_pending[payload] = False
            if not in_service[payload] and server_queue[payload]:
                start_work(t, payload)
        else:  # done
            j = payload
            finished, in_service[j] = in_service[j], []
            for st in finished:
                finish(t, st)
            if server_queue[j]:
                if server_model == "serial":
                    start_work(t, j)
                elif not boundary_pending[j]:
                    boundary_pending[j] = True
                    add(t, "boundary", j)
    return trace


__all__ = ["RefSession", "RefStep", "reference_run"]

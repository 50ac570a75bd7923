"""The event-driven simulator (docs/architecture.md "The simulator"; docs/model.md §5).

Semantics (the published simulator's, so its tables can be reproduced):

* requests arrive (Poisson or a trace) and are routed in arrival order by a routing policy that
  sees a read-only :class:`~distllm_env.view.ClusterView`;
* service time of a session = Σ_hops [t^I_cj + m·τ^I_j] + (l_out − 1)·Σ_hops [t_cj + m·τ_j], with no
  slowdown from concurrency (:mod:`distllm_env.perf`);
* a session holds m_ij × (its KV bytes per block) on each hop from its start to its completion; it
  starts when every hop has room (:mod:`distllm_env.reservations`, ``calendar`` or ``published``);
  memory is never over-committed;
* with ``backoff`` on, waits are rounded up to PETALS' cumulative retry instants;
* every session pays the initial delay and its policy family's allocation delay (held like service
  time); first token = start + initial delay + allocation delay + prefill pass;
* a request whose chain can never fit in memory is recorded ``rejected`` (``insufficient_memory``),
  one with no feasible chain ``rejected`` (``no_feasible_chain``) — never looped on.

* a route is committed only if every hop is reachable from the request's client (finite RTT) and
  every evaluated time is finite; otherwise the request is recorded ``rejected`` with reason
  ``unreachable`` or ``non_finite_time``.  A ``completed`` record always has finite, ordered times.

Events are small frozen dataclasses (:class:`Arrival`, :class:`SessionStart`, :class:`SessionEnd`)
in one heap of ``(time_s, priority, sequence, event)`` entries.  Tie-break order at equal times:
session starts (priority 0), then session ends (1), then arrivals (2); events of the same kind keep
the order in which they were pushed (``sequence``).  So a request arriving exactly when a session
ends sees that session's memory released (the calendar book already counts it free from its end).
Routing decisions happen at arrivals; new kinds (server fail/leave/join, see docs/architecture.md)
get their own class and priority.  :class:`Simulation` exposes the stepping API the RequestRouting
environment uses; :func:`distllm_env.api.simulate` drives it with a routing policy.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import ClassVar, Sequence, Union

import numpy as np

from .chains import Route
from .errors import DistLLMError
from .instance import Instance
from .placement import PlacementResult, run_kv_capacity_bytes
from .records import (checked_commit, check_current_request, check_deferral, REJECT_MEMORY, REJECT_NON_FINITE, REJECT_UNREACHABLE, ClientPart, Outcome,  # noqa: F401
                      RequestRecord, check_record, rejected_record)
from .reservations import make_book, start_with_backoff
from .view import ClusterView
from .workload import Request


@dataclass(frozen=True, slots=True)
class SessionStart:
    """A committed session starts holding its memory (counts towards ``active_sessions``)."""

    request_id: int
    priority: ClassVar[int] = 0


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """A session completes and releases its memory."""

    request_id: int
    priority: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class Arrival:
    """A request arrives and is handed to the router (:meth:`Simulation.next_request`)."""

    request_id: int
    priority: ClassVar[int] = 2


Event = Union[SessionStart, SessionEnd, Arrival]

#: Deprecated integer event kinds (the heap now holds :data:`Event` objects); kept as aliases of the
#: priorities for code that imported them.
START, COMPLETION, ARRIVAL = SessionStart.priority, SessionEnd.priority, Arrival.priority

class Simulation:
    """One run of the simulator over a fixed placement and a list of requests.

    Stepping API: ``req = sim.next_request()`` advances the clock to the next arrival (``None``
    when all requests are done); then ``sim.commit(req, route)`` or ``sim.reject(req, reason)``.

    Raises :class:`DistLLMError` if the placement does not match the instance (servers, blocks) or
    request ids are not 0..n−1 in order, :class:`~distllm_env.errors.PlacementError` if the
    placement leaves a block uncovered or over-fills a server's memory, and ``ValueError`` for an
    unknown ``reservation`` mode.
    """

    def __init__(self, instance: Instance, placement_result: PlacementResult, requests: Sequence[Request],
                 *, reservation: str = "calendar", backoff: bool = True, allocation_delay_s: float = 0.0):
        self.instance = instance
        self.placement_result = placement_result
        self.placement = placement_result.placement
        self.cache_policy = placement_result.cache_policy
        self.capacity_bytes = run_kv_capacity_bytes(instance, placement_result)
        self.reservation = reservation
        self.backoff = backoff
        self.allocation_delay_s = float(allocation_delay_s)
        self.book = make_book(reservation, self.capacity_bytes)
        self.requests = list(requests)
        self.records: list[RequestRecord | None] = [None] * len(self.requests)
        self._client_parts: dict[int, ClientPart] = {}
        self.now_s = 0.0
        self.current_request: Request | None = None
        self._events: list[tuple[float, int, int, Event]] = []
        self._seq = 0
        for i, r in enumerate(self.requests):
            if r.id != i:
                raise DistLLMError(f"request ids must be 0..n-1 in order; request {i} has id {r.id}")
            self._push(r.arrival_s, Arrival(i))
        self.active_sessions = 0
        self.max_active_sessions = 0
        self._active_on = [0] * instance.num_servers
        self.view = ClusterView(self)

    def active_sessions_on(self, server: int) -> int:
        """Sessions holding a span on ``server`` now (started, not yet completed)."""
        return self._active_on[server]

    def queued_work_s(self, server: int) -> float:
        """Step time queued on ``server`` now: always 0 s (``independent`` servers never queue)."""
        return 0.0

    def _push(self, t: float, event: Event) -> None:
        heapq.heappush(self._events, (t, event.priority, self._seq, event))
        self._seq += 1

    # -- stepping ------------------------------------------------------------------------------------
    def next_request(self) -> Request | None:
        """Pop events up to the next arrival and return that request (``None`` at the end).  A request
        with ``rejection`` set is recorded rejected with that reason at its arrival, without routing.
        Raises :class:`DistLLMError` if the previous request was neither committed nor rejected."""
        if self.current_request is not None:
            raise DistLLMError(f"request {self.current_request.id} was neither committed nor rejected")
        while self._events:
            t, _, _, event = heapq.heappop(self._events)
            self.now_s = max(self.now_s, t)
            if isinstance(event, SessionStart):
                self.active_sessions += 1
                self.max_active_sessions = max(self.max_active_sessions, self.active_sessions)
                for h in self.records[event.request_id].route.hops:
                    self._active_on[h.server] += 1
            elif isinstance(event, SessionEnd):
                self.active_sessions -= 1
                for h in self.records[event.request_id].route.hops:
                    self._active_on[h.server] -= 1
            else:
                self.book.advance(self.now_s)
                self.current_request = self.requests[event.request_id]
                if self.current_request.rejection:      # e.g. exceeds_max_sequence: never routed
                    self.reject(self.current_request, str(self.current_request.rejection))
                    continue
                return self.current_request
        return None

    def evaluate(self, request: Request, route: Route) -> Outcome:
        """Start, first-token and completion times ``request`` would get on ``route`` now (seconds;
        ``start_s`` is ``None`` if the chain can never fit).  Commits nothing.  The route is not
        checked here (:meth:`commit` checks it); times may be non-finite for an unreachable hop."""
        inst = self.instance
        servers = np.fromiter((h.server for h in route.hops), dtype=np.int64, count=len(route.hops))
        blocks = np.fromiter((h.blocks for h in route.hops), dtype=np.int64, count=len(route.hops))
        first_token, service = inst.chain_times_s(request.client, servers, blocks, request.prompt_tokens,
                                                  request.output_tokens)
        part = self._client_parts.get(request.id)
        if part is not None and request.client_blocks:
            first_token += part.prefill_s
            service += part.prefill_s + (request.output_tokens - 1) * part.per_token_s
        lead = inst.initial_delay_s + self.allocation_delay_s
        hold = lead + service
        per_block = inst.model.kv_bytes_per_block(request.prompt_tokens, request.output_tokens)
        hops = tuple((int(j), int(m) * per_block) for j, m in zip(servers, blocks))
        start = self.start_s(hops, hold)
        if start is None:
            return Outcome(None, math.nan, math.nan, service, hold, hops)
        completion = start + hold                       # exactly the reserved interval's end
        # first token ≤ completion also in floating point (equal when l_out = 1)
        return Outcome(start, min(start + lead + first_token, completion), completion, service, hold, hops)

    def start_s(self, hops, hold_s: float) -> float | None:
        """The start a request needing ``hops`` ((server, bytes) pairs) for ``hold_s`` seconds gets if
        committed now: the earliest feasible start on the reservation book, rounded up to PETALS'
        back-off instants when back-off is on; ``None`` if it can never fit."""
        if self.backoff:
            return start_with_backoff(self.book, self.now_s, hops, hold_s)
        return self.book.earliest_start(self.now_s, hops, hold_s)

    def start_times_s(self, hop_sets, holds_s) -> list[float | None]:
        """:meth:`start_s` of several candidate chains at once (hops shared between candidates are
        evaluated once where the accounting allows)."""
        raw = self.book.earliest_starts(self.now_s, hop_sets, holds_s)
        if not self.backoff:
            return raw
        now = self.now_s
        # published book: a chain free now starts now (retry instant 0, and fits(now) is hop_start's own
        # test), so the back-off walk is skipped for it; same floats, fewer calls (issue 13 item 7)
        free_now = getattr(self.book, "mode", None) == "published"
        return [None if r is None else r if (free_now and r == now) else
                start_with_backoff(self.book, now, h, d, earliest=r) for r, h, d in zip(raw, hop_sets, holds_s)]

    def reachable(self, client: int, servers) -> bool:
        """Whether every server in ``servers`` is reachable from ``client`` (finite RTT)."""
        return bool(np.all(np.isfinite(self.instance.rtt_s[client, np.asarray(servers, dtype=np.int64)])))

    def commit(self, request: Request, route: Route) -> RequestRecord:
        """Route ``request`` on ``route``: reserve its memory and record its times.

        Recorded as rejected instead (never committed): ``unreachable`` if a hop's server cannot be
        reached from the client (infinite RTT), ``insufficient_memory`` if the chain can never fit,
        ``non_finite_time`` if any evaluated time is not finite.  Raises :class:`RouteError` if
        ``route`` is not a :class:`Route` or violates the placement (Lemma 1), and
        :class:`DistLLMError` if ``request`` is not the request being routed."""
        refused = checked_commit(self, request, route)
        if refused is not None:
            return refused
        out = self.evaluate(request, route)
        if not out.feasible:
            return self.reject(request, REJECT_MEMORY, route=route)
        if not (math.isfinite(out.start_s) and math.isfinite(out.first_token_s) and math.isfinite(out.completion_s)):
            return self.reject(request, REJECT_NON_FINITE, route=route)
        self.book.commit(self.now_s, out.start_s, out.completion_s, out.hops)
        self._push(out.start_s, SessionStart(request.id))
        self._push(out.completion_s, SessionEnd(request.id))
        rec = RequestRecord(
            request_id=request.id, client=request.client, arrival_s=request.arrival_s, start_s=out.start_s,
            first_token_s=out.first_token_s, completion_s=out.completion_s, wait_s=out.start_s - request.arrival_s,
            prompt_tokens=request.prompt_tokens, output_tokens=request.output_tokens, hops=len(route),
            route=route, status="completed", reason="", client_blocks=request.client_blocks,
            kv_bytes_per_block=self.instance.model.kv_bytes_per_block(request.prompt_tokens, request.output_tokens),
            declared_tokens=int(request.declared_output_tokens), truncated=bool(request.truncated),
        )
        self.records[request.id] = rec
        self.current_request = None
        return rec

    def defer(self, request: Request, until_s: float) -> None:
        """Put back ``request`` (the request being routed) undecided: it arrives again at ``until_s``
        and is returned by :meth:`next_request` then, keeping its ``arrival_s`` (its waiting counts in
        its times).  The RequestRouting env's defer action (docs/envs.md "Defer action").  Raises
        :class:`DistLLMError` if ``request`` is not the request being routed or ``until_s`` is not a
        finite time ≥ now (:func:`~distllm_env.records.check_deferral`)."""
        check_deferral(self.current_request, request, until_s, self.now_s)
        self.current_request = None
        self._push(float(until_s), Arrival(request.id))

    def reject(self, request: Request, reason: str, route: Route | None = None) -> RequestRecord:
        """Record ``request`` as rejected for ``reason`` (times NaN).  Raises :class:`DistLLMError` if
        ``request`` is not the request being routed."""
        self._check_current(request)
        rec = rejected_record(request, reason, route)
        self.records[request.id] = rec
        self.current_request = None
        return rec

    def _check_current(self, request: Request) -> None:
        check_current_request(self.current_request, request)

    def apply_split(self, part: ClientPart) -> Request:
        """Apply a split decision to the request being routed (before routing it): the client runs
        ``part.blocks`` leading blocks, charged ``part.prefill_s`` + (l−1)·``part.per_token_s``.
        Raises :class:`DistLLMError` if no request is being routed, ``part.blocks`` is outside
        0..L−1, or a client time is negative."""
        from dataclasses import replace

        req = self.current_request
        if req is None:
            raise DistLLMError("no request is being routed")
        if not 0 <= part.blocks < self.instance.num_blocks:
            raise DistLLMError(f"the client may run 0..{self.instance.num_blocks - 1} blocks (the server chain needs "
                               f"at least one), got {part.blocks}")
        if part.prefill_s < 0 or part.per_token_s < 0:
            raise DistLLMError(f"client times must be ≥ 0, got {part}")
        self._client_parts[req.id] = part
        req = replace(req, client_blocks=int(part.blocks))
        self.requests[req.id] = req
        self.current_request = req
        return req

    # -- forking (docs/architecture.md "Forking a simulation") ---------------------------------------
    def fork(self, future: Sequence[Request] | None = None, also: Sequence = ()):
        """An independent copy of this run that continues byte-identically under the same decisions
        (the request being routed, if any, is still being routed in the copy).  Immutable parts
        (instance, placement, capacities, chain DAGs, requests, records) are shared, the mutable state
        (reservation book, event heap, counters) copied (:func:`distllm_env.forking.fork_copy`);
        nothing done to the fork touches the original.  The simulation holds no policy object.

        ``future``: requests that replace the ones not yet arrived (a hypothetical continuation, e.g.
        lookahead rollouts with sampled arrivals): renumbered from the first id not yet arrived, each
        arriving at or after now, in arrival order.  Raises :class:`DistLLMError` otherwise.

        ``also``: objects copied in the same pass (the router and rng driving the run, so that a churn
        engine's failover router stays the same object as the fork's router); the result is then the
        tuple ``(fork, *copies)``."""
        from .forking import engine_parts, fork_copy

        shared, shallow = engine_parts(self, ("requests", "records", "_client_parts", "_events", "_active_on"))
        new = fork_copy(self, shared, shallow, also=also)
        if future is not None:
            (new[0] if also else new)._set_future(future)
        return new

    def _set_future(self, future: Sequence[Request]) -> None:
        from .forking import future_ids, renumber_future

        queued = [(e.request_id, t) for t, _, _, e in self._events if isinstance(e, Arrival)]
        first = future_ids(queued, lambda i: self.requests[i].arrival_s, len(self.requests))
        self._events = [e for e in self._events if not (isinstance(e[3], Arrival) and e[3].request_id >= first)]
        heapq.heapify(self._events)
        reqs = renumber_future(future, first, self.now_s)
        del self.requests[first:]
        del self.records[first:]
        self.requests.extend(reqs)
        self.records.extend([None] * len(reqs))
        for r in reqs:
            self._push(r.arrival_s, Arrival(r.id))

    def finished_records(self) -> list[RequestRecord]:
        """The per-request table, one record per request.  Raises :class:`DistLLMError` if a request
        was never routed; asserts that every completed record has finite, ordered times."""
        missing = [i for i, r in enumerate(self.records) if r is None]
        if missing:
            raise DistLLMError(f"{len(missing)} requests were never routed (first: {missing[0]})")
        records = list(self.records)
        for r in records:
            check_record(r)  # type: ignore[arg-type]
        return records  # type: ignore[return-value]


def uses_live_engine(instance: Instance, requests: Sequence[Request]) -> bool:
    """Whether the scenario needs the live engine (:mod:`distllm_env.live`): a ``serial`` or
    ``batched`` server model, a ``churn:`` section, or any request whose output length is not known in advance
    (``workload.output_tokens_known: false``)."""
    sim = instance.scenario.simulator
    if getattr(sim, "server_model", "independent") != "independent":
        return True
    if getattr(instance.scenario, "churn", None) is not None:     # churn runs on the live engine
        return True
    if not getattr(instance.scenario.workload, "output_tokens_known", True):
        return True
    return any(not r.output_tokens_known or r.declared_output_tokens != r.output_tokens for r in requests)


def new_simulation(instance: Instance, placement_result: PlacementResult, requests: Sequence[Request], *,
                   reservation: str = "calendar", backoff: bool = True, allocation_delay_s: float = 0.0,
                   engine: str | None = None, churn: bool = True):
    """The simulation for ``instance``'s scenario: the analytic :class:`Simulation` for
    ``simulator.server_model: independent`` with known lengths (every ``paper-*`` preset, bit-identical
    to before), else :class:`~distllm_env.live.engine.LiveSimulation` (docs/architecture.md "How the
    core grows").  The engine follows the scenario, never the caller; ``engine="live"`` forces the
    live engine (tests only: it must reproduce the analytic records exactly).  ``churn=False`` ignores
    the scenario's ``churn:`` section (planning probes, e.g. CG-BP's lone-request time; the live engine
    still runs).  Raises what the chosen engine raises."""
    from .live.engine import LiveSimulation

    sim_spec = instance.scenario.simulator
    if engine == "live" or uses_live_engine(instance, requests):
        kw = dict(reservation=reservation, backoff=backoff, allocation_delay_s=allocation_delay_s,
                  server_model=getattr(sim_spec, "server_model", "independent"),
                  batched_step_overhead_s=getattr(sim_spec, "batched_step_overhead_ms", 0.0) / 1000.0)
        spec = getattr(instance.scenario, "churn", None)
        if spec is not None and churn:        # server churn and failover (docs/model.md §12)
            from .live.churn import ChurnSimulation
            return ChurnSimulation(instance, placement_result, requests, churn=spec, **kw)
        return LiveSimulation(instance, placement_result, requests, **kw)
    return Simulation(instance, placement_result, requests, reservation=reservation, backoff=backoff,
                      allocation_delay_s=allocation_delay_s)


__all__ = ["Arrival", "ClientPart", "Event", "Outcome", "REJECT_MEMORY", "REJECT_NON_FINITE", "REJECT_UNREACHABLE",
           "RequestRecord", "SessionEnd", "SessionStart", "Simulation", "check_record", "new_simulation", "uses_live_engine"]

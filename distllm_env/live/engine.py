"""The live engine: server contention and honest unknown lengths (docs/simulator.md "The live engine").

Sessions are state machines (waiting → prefill → decode → done, :mod:`~distllm_env.live.sessions`).

* Memory: KV for prompt + DECLARED output, × m_ij on every hop (the analytic engine's bytes formula),
  taken at admission and released at the session's TRUE completion.  Committed sessions that do not
  fit wait in a FIFO admission queue; with back-off on, the head is admitted at the first PETALS retry
  instant (from its arrival) at or after the time it fits (:mod:`distllm_env.backoff`).  The queue is
  re-checked at release events only.  A chain that can never fit is rejected ``insufficient_memory``.
* Steps: a token visits its hops in order; hop h's step reaches server j after the hop's
  communication cost (t^I_cj at prefill, t_cj at decode) and costs m_ij·τ^I_j(l_in) (prefill) or
  m_ij·τ_j (decode) under ``serial``; under ``batched`` it joins the next iteration
  (:func:`~distllm_env.live.server_models.batch_time_s`).  Initial delay + allocation delay come
  before the first step.
* ``independent``: a session's times are the analytic closed form, known at commit, so admission uses
  the analytic engine's reservation book (``calendar`` / ``published``, back-off included) with the
  declared bytes held until the TRUE completion: with known lengths the records equal the analytic
  engine's exactly.  The router's view still sees only predictions (:class:`LiveBook`).

Heap entries are plain tuples ``(time_s, kind, a, sequence, b)`` (``a``: session / request id, or
server for batch events).  Tie-break at equal times, by kind: session end (memory released) < step
arrival < batch done < batch start < admission retry < scheduled admission (``independent``) <
request arrival; then by ``a``: steps reaching a server at the same instant are served in request-id
order; then push order.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import replace
from typing import Sequence

import numpy as np

from ..backoff import first_retry_at_or_after_s
from ..chains import Route, check_route
from ..errors import DistLLMError, RouteError
from ..instance import Instance
from ..reservations import make_book, start_with_backoff
from ..placement import PlacementResult, check_memory
from ..records import (REJECT_MEMORY, REJECT_NON_FINITE, REJECT_UNREACHABLE, ClientPart, Outcome, RequestRecord,
                         check_record)
from ..view import ClusterView
from ..workload import Request
from .server_models import SERVER_MODELS, batch_time_s
from .sessions import DECODE, DONE, PREFILL, LiveBook, Session, build_session, closed_form

END, STEP, BATCH_DONE, BATCH_START, RETRY, ADMIT, ARRIVAL = range(7)


def public_request(r: Request) -> Request:
    """The request as routers see it: ``output_tokens`` is the DECLARED length."""
    if r.output_tokens == r.declared_output_tokens:
        return r
    return replace(r, output_tokens=int(r.declared_output_tokens))


class LiveSimulation:
    """One run of the live engine; same stepping API as :class:`~distllm_env.simulator.Simulation`
    (``next_request`` / ``commit`` / ``reject`` / ``apply_split`` / ``evaluate`` / ``start_times_s`` /
    ``finished_records`` / ``view``).  ``commit`` returns a ``pending`` record (times are predictions);
    the final record is in :meth:`finished_records` once the run ends.

    Raises what :class:`~distllm_env.simulator.Simulation` raises, and ``ValueError`` for an unknown
    ``server_model``."""

    def __init__(self, instance: Instance, placement_result: PlacementResult, requests: Sequence[Request], *,
                 reservation: str = "calendar", backoff: bool = True, allocation_delay_s: float = 0.0,
                 server_model: str = "independent", batched_step_overhead_s: float = 0.0):
        if server_model not in SERVER_MODELS:
            raise ValueError(f"server_model must be one of {SERVER_MODELS}, got {server_model!r}")
        self.instance = instance
        self.placement_result = placement_result
        self.placement = placement_result.placement
        self.cache_policy = placement_result.cache_policy
        if self.placement.num_servers != instance.num_servers:
            raise DistLLMError(f"placement has {self.placement.num_servers} servers, the instance "
                               f"{instance.num_servers}")
        if self.placement.num_blocks != instance.num_blocks:
            raise DistLLMError(f"placement is for {self.placement.num_blocks} blocks, the model has "
                               f"{instance.num_blocks}")
        self.placement.check_covered()
        check_memory(self.placement, instance.memory_bytes, instance.block_bytes, instance.max_blocks)
        self.capacity_bytes = np.asarray(self.cache_policy.kv_capacity_bytes(
            instance.memory_bytes, instance.block_bytes, self.placement.count_array,
            instance.kv_bytes_per_token_per_block), dtype=np.int64)
        self.reservation = reservation     # the analytic engine's accounting; not used here
        self.backoff = backoff
        self.allocation_delay_s = float(allocation_delay_s)
        self.server_model = server_model
        self.batched_step_overhead_s = float(batched_step_overhead_s)
        n_srv = instance.num_servers
        self._true = list(requests)         # engine-private: true output lengths
        self.requests = [public_request(r) for r in self._true]
        self.records: list[RequestRecord | None] = [None] * len(self.requests)
        self._client_parts: dict[int, ClientPart] = {}
        self.sessions: dict[int, Session] = {}
        self.used_bytes = [0] * n_srv
        self.holders: list[dict[int, int]] = [{} for _ in range(n_srv)]   # server → {session: hop}
        self.busy_until_s = np.zeros(n_srv)
        self._waiting: list[list[tuple[int, int]]] = [[] for _ in range(n_srv)]
        self._batch: list[list[tuple[int, int]] | None] = [None] * n_srv
        self._start_pending = [False] * n_srv
        self._queue: deque[int] = deque()
        self._retry_pending = False
        self._tau = [float(x) for x in instance.tau_decode_s]
        self._peak = [float(s.gpu.dense_bf16_flops) for s in instance.servers]
        self._ftok = float(instance.model.flops_per_token_per_block)
        self.now_s = 0.0
        self.current_request: Request | None = None
        self._events: list[tuple] = []
        self._seq = 0
        for i, r in enumerate(self._true):
            if r.id != i:
                raise DistLLMError(f"request ids must be 0..n-1 in order; request {i} has id {r.id}")
            self._push(r.arrival_s, ARRIVAL, i, 0)
        self.active_sessions = 0
        self.max_active_sessions = 0
        self.book = LiveBook(self)
        self._calendar = make_book(reservation, self.capacity_bytes) if server_model == "independent" else None
        self.view = ClusterView(self)

    def _push(self, t: float, kind: int, a: int, b: int) -> None:
        heapq.heappush(self._events, (t, kind, a, self._seq, b))
        self._seq += 1

    # -- what the view reads -------------------------------------------------------------------------
    def active_sessions_on(self, server: int) -> int:
        """Sessions holding a span on ``server`` now."""
        return len(self.holders[server])

    def queued_work_s(self, server: int) -> float:
        """Step time queued or in service on ``server`` now (s): busy-until − now under ``serial``; the
        rest of the running iteration plus one iteration of the waiting steps under ``batched``."""
        left = max(float(self.busy_until_s[server]) - self.now_s, 0.0)
        if self.server_model == "batched" and self._waiting[server]:
            left += batch_time_s(self._waiting[server], self.sessions, self._tau[server], self._ftok,
                                 self._peak[server], self.batched_step_overhead_s)
        return left

    # -- stepping ------------------------------------------------------------------------------------
    def next_request(self) -> Request | None:
        """Process events up to the next arrival and return that request as routers see it (``None``
        once every request has ended).  A request with ``rejection`` set is recorded rejected at its
        arrival without routing."""
        if self.current_request is not None:
            raise DistLLMError(f"request {self.current_request.id} was neither committed nor rejected")
        events = self._events
        while events:
            t, kind, a, _, b = heapq.heappop(events)
            if t > self.now_s:
                self.now_s = t
            if kind == STEP:
                self._step_arrives(t, a, b)
            elif kind == END:
                self._release(t, a)
            elif kind == BATCH_DONE:
                self._batch_done(t, a)
            elif kind == BATCH_START:
                self._batch_start(t, a)
            elif kind == RETRY:
                self._retry_pending = False
                self._try_admit(t)
            elif kind == ADMIT:
                self._admit(t, self.sessions[a])
            else:
                if self._calendar is not None:
                    self._calendar.advance(self.now_s)
                req = self.requests[a]
                self.current_request = req
                if req.rejection:
                    self.reject(req, str(req.rejection))
                    continue
                return req
        return None

    def _session(self, request: Request, route: Route) -> Session:
        part = self._client_parts.get(request.id) if request.client_blocks else None
        return build_session(self.instance, request, route, part, self.instance.initial_delay_s + self.allocation_delay_s)

    def _closed_form(self, s: Session, request: Request) -> tuple[float, float]:
        return closed_form(self.instance, s, request)

    def evaluate(self, request: Request, route: Route) -> Outcome:
        """PREDICTED outcome of ``request`` (as routers see it: declared length) on ``route`` now:
        predicted start from :class:`LiveBook`, uncontended service.  Commits nothing."""
        s = self._session(request, route)
        service = s.static_first_s + (s.declared - 1) * s.static_token_s
        hold = s.lead_s + service
        start = self.book.earliest_start(self.now_s, s.hops, hold)
        if start is None:
            return Outcome(None, math.nan, math.nan, service, hold, s.hops)
        return Outcome(start, start + s.lead_s + s.static_first_s, start + hold, service, hold, s.hops)

    def start_times_s(self, hop_sets, holds_s) -> list[float | None]:
        """Predicted starts of several candidate chains (:meth:`LiveBook.earliest_starts`)."""
        return self.book.earliest_starts(self.now_s, hop_sets, holds_s)

    def reachable(self, client: int, servers) -> bool:
        return bool(np.all(np.isfinite(self.instance.rtt_s[client, np.asarray(servers, dtype=np.int64)])))

    def commit(self, request: Request, route: Route) -> RequestRecord:
        """Commit ``request`` to ``route``: it joins the admission queue (admitted now if it fits and
        nobody waits).  Returns a ``pending`` record (predicted times) or a ``rejected`` one
        (``unreachable``, ``insufficient_memory``, ``non_finite_time``).  Raises :class:`RouteError`
        for an invalid route, :class:`DistLLMError` if ``request`` is not the request being routed."""
        self._check_current(request)
        if not isinstance(route, Route):
            raise RouteError(f"routing policy returned {type(route).__name__}, expected a Route")
        check_route(self.placement, route, request.client_blocks)
        if not self.reachable(request.client, [h.server for h in route.hops]):
            return self.reject(request, REJECT_UNREACHABLE, route=route)
        true = self._true[request.id]
        s = self._session(true, route)
        if any(need > self.capacity_bytes[j] for j, need in s.hops):
            return self.reject(request, REJECT_MEMORY, route=route)
        if not (math.isfinite(s.static_first_s) and math.isfinite(s.static_token_s)):
            return self.reject(request, REJECT_NON_FINITE, route=route)
        if self._calendar is not None:
            return self._commit_independent(request, true, s)
        out = self.evaluate(request, route)
        self.sessions[request.id] = s
        self._queue.append(request.id)
        self.current_request = None
        self._try_admit(self.now_s)
        return self._record(true, s, "pending", start_s=out.start_s if out.start_s is not None else math.nan,
                            first_s=out.first_token_s, end_s=out.completion_s)

    def _commit_independent(self, request: Request, true: Request, s: Session) -> RequestRecord:
        """``independent``: the analytic engine's start rule and closed form (true length), memory by
        the declared length on the reservation book; admission scheduled at the start."""
        first, service = self._closed_form(s, true)
        hold = s.lead_s + service
        book, now, hops = self._calendar, self.now_s, s.hops
        start = start_with_backoff(book, now, hops, hold) if self.backoff else book.earliest_start(now, hops, hold)
        if start is None:
            return self.reject(request, REJECT_MEMORY, route=s.route)
        completion = start + hold
        first_token = min(start + s.lead_s + first, completion)
        if not (math.isfinite(start) and math.isfinite(first_token) and math.isfinite(completion)):
            return self.reject(request, REJECT_NON_FINITE, route=s.route)
        book.commit(now, start, completion, hops)
        s.completion_s, s.first_token_s = completion, first_token
        self.sessions[request.id] = s
        self._push(start, ADMIT, s.rid, 0)
        self.current_request = None
        return self._record(true, s, "pending", start, first_token, completion)

    def _fits(self, s: Session) -> bool:
        cap, used = self.capacity_bytes, self.used_bytes
        return all(used[j] + need <= cap[j] for j, need in zip(s.servers, s.need_bytes))

    def _try_admit(self, t: float) -> None:
        """Admit queue heads (FIFO) that fit at ``t``; with back-off, at the head's next retry instant."""
        q = self._queue
        while q and not self._retry_pending:
            s = self.sessions[q[0]]
            if not self._fits(s):
                return
            if self.backoff:
                r = first_retry_at_or_after_s(self._true[s.rid].arrival_s, t)
                if r > t:
                    self._retry_pending = True
                    self._push(r, RETRY, s.rid, 0)
                    return
            q.popleft()
            self._admit(t, s)

    def _admit(self, t: float, s: Session) -> None:
        s.start_s = t
        for h, (j, need) in enumerate(zip(s.servers, s.need_bytes)):
            self.used_bytes[j] += need
            self.holders[j][s.rid] = h
        self.active_sessions += 1
        self.max_active_sessions = max(self.max_active_sessions, self.active_sessions)
        if self.server_model == "independent":     # times fixed at commit (_commit_independent)
            s.done_tokens, s.last_token_s, s.state = 1, s.first_token_s, DECODE
            self._push(s.completion_s, END, s.rid, 0)
            return
        s.state = PREFILL
        self._push(t + s.lead_s + s.client_prefill_s + s.comm_prefill_s[0], STEP, s.rid, 0)

    def _step_arrives(self, t: float, sid: int, h: int) -> None:
        s = self.sessions[sid]
        j = s.servers[h]
        if self.server_model == "serial":
            cost = s.comp_prefill_s[h] if s.done_tokens == 0 else s.comp_decode_s[h]
            busy = self.busy_until_s[j]
            done = (t if t > busy else float(busy)) + cost
            self.busy_until_s[j] = done
            self._step_done(done, s, h)
            return
        self._waiting[j].append((sid, h))
        if self._batch[j] is None and not self._start_pending[j]:
            self._start_pending[j] = True
            self._push(t, BATCH_START, j, 0)

    def _step_done(self, done: float, s: Session, h: int) -> None:
        """Step of hop ``h`` finished at ``done``: schedule the next hop, or finish the token."""
        if h + 1 < len(s.servers):
            comm = s.comm_prefill_s[h + 1] if s.done_tokens == 0 else s.comm_decode_s[h + 1]
            self._push(done + comm, STEP, s.rid, h + 1)
            return
        s.done_tokens += 1
        s.last_token_s = done
        if s.done_tokens == 1:
            s.first_token_s = done
            s.state = DECODE
        if s.done_tokens >= s.tokens:
            s.completion_s = done
            self._push(done, END, s.rid, 0)
        else:
            self._push(done + s.client_token_s + s.comm_decode_s[0], STEP, s.rid, 0)

    def _batch_start(self, t: float, j: int) -> None:
        self._start_pending[j] = False
        batch, self._waiting[j] = self._waiting[j], []
        if not batch:
            return
        self._batch[j] = batch
        dt = batch_time_s(batch, self.sessions, self._tau[j], self._ftok, self._peak[j], self.batched_step_overhead_s)
        self.busy_until_s[j] = t + dt
        self._push(t + dt, BATCH_DONE, j, 0)

    def _batch_done(self, t: float, j: int) -> None:
        batch, self._batch[j] = self._batch[j], None
        for sid, h in batch:
            self._step_done(t, self.sessions[sid], h)
        if self._waiting[j] and not self._start_pending[j]:
            self._start_pending[j] = True
            self._push(t, BATCH_START, j, 0)

    def _release(self, t: float, sid: int) -> None:
        s = self.sessions[sid]
        s.state = DONE
        for j, need in zip(s.servers, s.need_bytes):
            self.used_bytes[j] -= need
            del self.holders[j][sid]
        self.active_sessions -= 1
        self.records[sid] = self._record(self._true[sid], s, "completed", s.start_s, s.first_token_s, s.completion_s)
        self._try_admit(t)

    def _record(self, r: Request, s: Session, status: str, start_s: float, first_s: float,
                end_s: float) -> RequestRecord:
        return RequestRecord(
            request_id=r.id, client=r.client, arrival_s=r.arrival_s, start_s=start_s, first_token_s=first_s,
            completion_s=end_s, wait_s=start_s - r.arrival_s, prompt_tokens=r.prompt_tokens,
            output_tokens=r.output_tokens, hops=len(s.route), route=s.route, status=status, reason="",
            client_blocks=r.client_blocks, kv_bytes_per_block=s.per_block_bytes,
            declared_tokens=int(r.declared_output_tokens))

    def reject(self, request: Request, reason: str, route: Route | None = None) -> RequestRecord:
        """Record ``request`` rejected for ``reason`` (times NaN)."""
        self._check_current(request)
        r, nan = self._true[request.id], math.nan
        rec = RequestRecord(
            request_id=r.id, client=r.client, arrival_s=r.arrival_s, start_s=nan, first_token_s=nan,
            completion_s=nan, wait_s=nan, prompt_tokens=r.prompt_tokens, output_tokens=r.output_tokens,
            hops=len(route) if route is not None else 0, route=route, status="rejected", reason=reason,
            client_blocks=r.client_blocks, declared_tokens=int(r.declared_output_tokens))
        self.records[r.id] = rec
        self.current_request = None
        return rec

    def _check_current(self, request: Request) -> None:
        if self.current_request is None or request.id != self.current_request.id:
            raise DistLLMError(f"request {request.id} is not the request being routed "
                               f"({None if self.current_request is None else self.current_request.id})")

    def apply_split(self, part: ClientPart) -> Request:
        """As :meth:`Simulation.apply_split`."""
        req = self.current_request
        if req is None:
            raise DistLLMError("no request is being routed")
        if not 0 <= part.blocks < self.instance.num_blocks:
            raise DistLLMError(f"the client may run 0..{self.instance.num_blocks - 1} blocks (the server chain needs "
                               f"at least one), got {part.blocks}")
        if part.prefill_s < 0 or part.per_token_s < 0:
            raise DistLLMError(f"client times must be ≥ 0, got {part}")
        self._client_parts[req.id] = part
        self._true[req.id] = replace(self._true[req.id], client_blocks=int(part.blocks))
        req = replace(req, client_blocks=int(part.blocks))
        self.requests[req.id] = req
        self.current_request = req
        return req

    def finished_records(self) -> list[RequestRecord]:
        """The per-request table once every request has ended.  Raises :class:`DistLLMError` if a
        request was never routed or is still running."""
        missing = [i for i, r in enumerate(self.records) if r is None or r.status == "pending"]
        if missing:
            raise DistLLMError(f"{len(missing)} requests were never routed or are still running (first: {missing[0]})")
        for r in self.records:
            check_record(r)  # type: ignore[arg-type]
        return list(self.records)  # type: ignore[arg-type]


__all__ = ["LiveSimulation", "public_request"]

"""The live engine: server contention and honest unknown lengths (docs/simulator.md "The live engine").

Sessions are state machines (waiting → prefill → decode → done, :mod:`~distllm_env.live.sessions`).

* Memory: KV for prompt + DECLARED output, × m_ij on every hop (the analytic engine's bytes formula),
  taken at admission and released at the session's TRUE completion.  Admission is per-server FCFS
  (:mod:`~distllm_env.live.admission`): a committed session waits in the FIFO queue of every server
  of its route and is admitted when it heads all of them and fits on every hop; with back-off on, at
  its first PETALS retry instant (from its arrival) at or after then (:mod:`distllm_env.backoff`).
  A chain that can never fit is rejected ``insufficient_memory``.
* Steps: a token visits its hops in order; hop h's step reaches server j after the hop's
  communication cost (t^I_cj at prefill, t_cj at decode) and costs m_ij·τ^I_j(l_in) (prefill) or
  m_ij·τ_j (decode) under ``serial``; under ``batched`` it joins the next iteration
  (:func:`~distllm_env.live.server_models.batch_time_s`).  Initial delay + allocation delay come
  before the first step.
* ``independent``: a session's times are the analytic closed form, known at commit, so admission uses
  the analytic engine's reservation book (``calendar`` / ``published``, back-off included) with the
  declared bytes held until the TRUE completion: with known lengths the records equal the analytic
  engine's exactly.  The router's view still sees only predictions (:class:`LiveBook`).

The heap's event kinds and tie-break are in :mod:`~distllm_env.live.event_kinds`.  The engine is three
modules: this one (construction, the event loop, prediction, commit, admission and records),
:mod:`~distllm_env.live.stepping` (the hot loop: steps, inline chains, iterations) and
:mod:`~distllm_env.live.plumbing` (defer, reject, client splits, fork, final records).
"""

from __future__ import annotations

import heapq
import math
from typing import Sequence

import numpy as np

from ..chains import Route
from ..errors import DistLLMError
from ..instance import Instance
from ..reservations import make_book, start_with_backoff
from ..placement import PlacementResult, run_kv_capacity_bytes
from ..records import REJECT_MEMORY, REJECT_NON_FINITE, ClientPart, checked_commit, Outcome, RequestRecord
from ..view import ClusterView
from ..workload import Request
from ..perf import hop_compute_s, prefill_comm_s
from .admission import ADMISSION_RULE, PerServerFifo
from .server_models import SERVER_MODELS, batch_time_s
from .event_kinds import ADMIT, ARRIVAL, BATCH_DONE, BATCH_START, END, RETRY, STEP
from .plumbing import ControlMixin, public_request
from .sessions import DECODE, DONE, PREFILL, LiveBook, Session, build_session, closed_form
from .stepping import SteppingMixin


class LiveSimulation(SteppingMixin, ControlMixin):
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
        self.capacity_bytes = run_kv_capacity_bytes(instance, placement_result)
        self.reservation = reservation     # the analytic engine's accounting; used by ``independent`` only
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
        # per-server FCFS admission (live/admission.py, docs/model.md §11)
        self.admission = PerServerFifo(self, RETRY)
        self._tau = [float(x) for x in instance.tau_decode_s]
        self._peak = [float(s.gpu.dense_bf16_flops) for s in instance.servers]
        self._ftok = float(instance.model.flops_per_token_per_block)
        self.now_s = 0.0
        self.current_request: Request | None = None
        self._events: list[tuple] = []
        self._seq = 0
        self._rows: tuple | None = None      # per-server cost rows of the request being evaluated (_static)
        # times of queued events other than steps (admissions, releases, arrivals, subclass events): a
        # session alone on its servers is served inline up to the earliest of them (_serial_chain)
        self._control: list[float] = []
        # (lower bound of the completion, session) of admitted sessions: the uncontended closed form,
        # less a margin for rounding; no session can end (and release memory) before its bound
        self._end_bounds: list[tuple[float, int]] = []
        cls = type(self)
        self._inline = (server_model in ("serial", "batched") and all(
            getattr(cls, m) is getattr(LiveSimulation, m)
            for m in ("_step_arrives", "_step_done", "_push", "_admit", "_release", "_batch_start", "_batch_done")))
        # end bounds need step times ≥ their uncontended cost: a negative iteration overhead breaks that
        self._alone_ok = self.batched_step_overhead_s >= 0.0
        self._serial = server_model == "serial"
        self._solo_s: dict[tuple[int, int, bool], float] = {}    # (session, hop, prefill) → one-step iteration (s)
        for i, r in enumerate(self._true):
            if r.id != i:
                raise DistLLMError(f"request ids must be 0..n-1 in order; request {i} has id {r.id}")
            self._push(r.arrival_s, ARRIVAL, i, 0)
        self.active_sessions = 0
        self.max_active_sessions = 0
        self.completed_ids: list[int] = []   # request ids in the order their sessions ended (delayed rewards)
        self.book = LiveBook(self)
        self._calendar = make_book(reservation, self.capacity_bytes) if server_model == "independent" else None
        self.view = ClusterView(self)

    @property
    def admission_rule(self) -> str:
        """``"per-server-fifo"`` (:mod:`~distllm_env.live.admission`) when sessions are stepped, else
        (``independent`` without churn: the analytic closed form) the reservation mode."""
        return ADMISSION_RULE if self._calendar is None else self.reservation

    def _push(self, t: float, kind: int, a: int, b: int) -> None:
        heapq.heappush(self._events, (t, kind, a, self._seq, b))
        self._seq += 1
        if kind == END or kind > BATCH_START:     # not a step or an iteration
            heapq.heappush(self._control, t)

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
        serial_inline = self._inline and self._serial
        sessions = self.sessions
        while events:
            t, kind, a, _, b = heapq.heappop(events)
            if t > self.now_s:
                self.now_s = t
            if kind == STEP:
                if serial_inline:
                    self._serial_chain(t, sessions[a], b)
                else:
                    self._step_arrives(t, a, b)
            elif kind == END:
                self._release(t, a)
            elif kind == BATCH_DONE:
                self._batch_done(t, a)
            elif kind == BATCH_START:
                self._batch_start(t, a)
            elif kind == RETRY:
                self.admission.retry(t, a)
            elif kind == ADMIT:
                self._admit(t, self.sessions[a])
            elif kind != ARRIVAL:       # kinds added by a subclass (churn: live/churn.py)
                self._other_event(t, kind, a, b)
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

    def _other_event(self, t: float, kind, a: int, b: int) -> None:
        raise DistLLMError(f"unknown event kind {kind!r} at {t} s")

    def _session(self, request: Request, route: Route) -> Session:
        part = self._client_parts.get(request.id) if request.client_blocks else None
        return build_session(self.instance, request, route, part, self.instance.initial_delay_s + self.allocation_delay_s)

    def _closed_form(self, s: Session, request: Request) -> tuple[float, float]:
        return closed_form(self.instance, s, request)

    def evaluate(self, request: Request, route: Route) -> Outcome:
        """PREDICTED outcome of ``request`` (as routers see it: declared length) on ``route`` now:
        predicted start from :class:`LiveBook`, uncontended service.  Commits nothing."""
        hops, first_s, token_s = self._static(request, route)
        lead_s = self.instance.initial_delay_s + self.allocation_delay_s
        service = first_s + (int(request.declared_output_tokens) - 1) * token_s
        hold = lead_s + service
        start = self.book.earliest_start(self.now_s, hops, hold)
        if start is None:
            return Outcome(None, math.nan, math.nan, service, hold, hops)
        return Outcome(start, start + lead_s + first_s, start + hold, service, hold, hops)

    def _static(self, request: Request, route: Route) -> tuple[tuple[tuple[int, int], ...], float, float]:
        """``(hops, static_first_s, static_token_s)`` of :func:`build_session` for ``request`` on
        ``route`` without building the session: the same per-hop floats (element-wise operations on the
        same operands, taken from per-server rows cached for the request) summed in the same order."""
        part = self._client_parts.get(request.id) if request.client_blocks else None
        key = (request.client, request.prompt_tokens, request.declared_output_tokens,
               (part.prefill_s, part.per_token_s) if part else None)
        rows = self._rows if self._rows is not None and self._rows[0] == key else None
        if rows is None:
            inst, c, p = self.instance, request.client, request.prompt_tokens
            rows = self._rows = (
                key,
                prefill_comm_s(inst.rtt_s[c], inst.prefill_overhead_slope_s, inst.prefill_overhead_intercept_s,
                               p).tolist(),
                inst.tau_prefill_s(p).tolist(), inst.token_cost_s[c].tolist(), inst.tau_decode_s.tolist(),
                inst.model.kv_bytes_per_block(p, request.declared_output_tokens),
                part.prefill_s if part else 0.0, part.per_token_s if part else 0.0)
        _, comm_p, tau_p, comm_d, tau_d, per_block, client_prefill_s, client_token_s = rows
        hops = tuple((h.server, h.blocks * per_block) for h in route.hops)
        servers = [h.server for h in route.hops]
        comp_p = [hop_compute_s(tau_p[j], h.blocks) for j, h in zip(servers, route.hops)]
        comp_d = [hop_compute_s(tau_d[j], h.blocks) for j, h in zip(servers, route.hops)]
        first_s = float(sum([comm_p[j] for j in servers]) + sum(comp_p)) + client_prefill_s
        token_s = float(sum([comm_d[j] for j in servers]) + sum(comp_d)) + client_token_s
        return hops, first_s, token_s

    def start_times_s(self, hop_sets, holds_s) -> list[float | None]:
        """Predicted starts of several candidate chains (:meth:`LiveBook.earliest_starts`)."""
        return self.book.earliest_starts(self.now_s, hop_sets, holds_s)

    def reachable(self, client: int, servers) -> bool:
        return bool(np.all(np.isfinite(self.instance.rtt_s[client, np.asarray(servers, dtype=np.int64)])))

    def commit(self, request: Request, route: Route) -> RequestRecord:
        """Commit ``request`` to ``route``: it joins the admission queues of its servers (admitted now if
        it fits and nobody waits on them, :class:`~distllm_env.live.admission.PerServerFifo`).  Returns
        a ``pending`` record (predicted times) or a ``rejected`` one
        (``unreachable``, ``insufficient_memory``, ``non_finite_time``).  Raises :class:`RouteError`
        for an invalid route, :class:`DistLLMError` if ``request`` is not the request being routed."""
        refused = checked_commit(self, request, route)
        if refused is not None:
            return refused
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
        self.current_request = None
        self.admission.enqueue(self.now_s, request.id)
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
        """Examine every server's admission-queue head at ``t`` (:class:`PerServerFifo`)."""
        self.admission.examine_all(t)

    def _reserve_kv(self, t: float, s: Session) -> None:
        """Admit ``s`` at ``t``: reserve its KV cache on every hop and count it active (both engines'
        ``_admit``; :meth:`_release` undoes it)."""
        s.start_s = t
        for h, (j, need) in enumerate(zip(s.servers, s.need_bytes)):
            self.used_bytes[j] += need
            self.holders[j][s.rid] = h
        self.active_sessions += 1
        self.max_active_sessions = max(self.max_active_sessions, self.active_sessions)

    def _admit(self, t: float, s: Session) -> None:
        self._reserve_kv(t, s)
        if self.server_model == "independent":     # times fixed at commit (_commit_independent)
            s.done_tokens, s.last_token_s, s.state = 1, s.first_token_s, DECODE
            self._push(s.completion_s, END, s.rid, 0)
            return
        s.state = PREFILL
        if self._inline:
            lb = t + s.lead_s + s.static_first_s + (s.tokens - 1) * s.static_token_s
            heapq.heappush(self._end_bounds, (lb - 1e-9 * abs(lb) - 1e-9, s.rid))
        self._push(t + s.lead_s + s.client_prefill_s + s.comm_prefill_s[0], STEP, s.rid, 0)

    def _release(self, t: float, sid: int) -> None:
        s = self.sessions[sid]
        s.state = DONE
        for j, need in zip(s.servers, s.need_bytes):
            self.used_bytes[j] -= need
            del self.holders[j][sid]
        self.active_sessions -= 1
        self.records[sid] = self._record(self._true[sid], s, "completed", s.start_s, s.first_token_s, s.completion_s)
        self.completed_ids.append(sid)
        self.admission.released(t, s.servers)

    def _record(self, r: Request, s: Session, status: str, start_s: float, first_s: float,
                end_s: float) -> RequestRecord:
        return RequestRecord(
            request_id=r.id, client=r.client, arrival_s=r.arrival_s, start_s=start_s, first_token_s=first_s,
            completion_s=end_s, wait_s=start_s - r.arrival_s, prompt_tokens=r.prompt_tokens,
            output_tokens=r.output_tokens, hops=len(s.route), route=s.route, status=status, reason="",
            client_blocks=r.client_blocks, kv_bytes_per_block=s.per_block_bytes,
            declared_tokens=int(r.declared_output_tokens), truncated=bool(r.truncated))


# the event kinds and public_request are re-exported (their import path before the split)
__all__ = ["LiveSimulation", "public_request"]

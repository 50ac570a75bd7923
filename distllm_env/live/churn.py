"""Churn on the live engine: servers that leave, fail and rejoin; PETALS-style session failover
(docs/model.md §12; docs/simulator.md "Churn"; schema: docs/scenarios.md "Churn").

:class:`ChurnSimulation` is the live engine (:class:`~distllm_env.live.engine.LiveSimulation`) plus
server events.  Every step is stepped token by token here, ``independent`` included (a step then
never waits for another session), so that a failure can interrupt it; under ``serial`` and
``independent`` a session's steps are served inline between control events
(:mod:`~distllm_env.live.fastforward`), with the same records.

* ``fail`` of server j at t: j is down at once; its queued and running steps are dropped and every
  session holding a span on j fails over at t.
* ``leave`` of j at t: j takes no new step; a session whose current step has already reached j
  finishes that step and fails over at its end, every other session holding j fails over at t.
* ``join``: j comes back with no KV held; the placement policy's online hook
  ``place_joining`` (if set with :meth:`ChurnSimulation.set_placement_policy`) may move its span; it
  serves once its blocks are loaded (reload time, PETALS rebalancing and arriving servers:
  :mod:`distllm_env.live.rebalance`, docs/model.md §12.1).
* Failover (PETALS ``src/petals/client/inference_session.py`` ``step`` and
  ``src/petals/client/routing/sequence_manager.py``): the session keeps its k finished tokens
  (client-side history); the session's client bans the peer (``ban_s``, doubled each time the same
  peer fails the same session; one request = one client session); the KV of the failed hop is released; the scenario's router is asked for a chain from the
  failed hop's first block (``client_blocks`` of the request it sees) over the servers that are up,
  not banned and not already on the route, and the chain is cut at the failed hop's last block; the
  new hops take their KV now (the chain must fit now).  Without a chain the client retries at the
  PETALS back-off instants after the failure (:func:`~distllm_env.backoff.backoff_instant_s`) and
  gives up (``rejected``, ``failover_timeout``) at the first retry later than ``idle_timeout_s`` after
  the failure or ``session_timeout_s`` after the session's start.  On success the replacement hops
  re-prefill prompt + k tokens (initial delay, then Σ over the new hops of t^I_cj(l) + m·τ^I_j(l),
  l = prompt + k, uncontended) and the session resumes its next token from hop 0; a session failed
  during its prefill (k = 0) restarts its prefill on the new chain instead.
  ``recovery_s`` adds, per recovery, resume instant − failure instant.  The failover methods are in
  :mod:`~distllm_env.live.failover` (:class:`~distllm_env.live.failover.FailoverMixin`).

Extra heap kinds (tie-break after the base kinds of :mod:`~distllm_env.live.engine`, except
``STEP_DONE``): ``STEP_DONE`` (0.5: a step's end, after session ends and before step arrivals),
``SERVER`` (server event) and ``RECOVER`` (a failover attempt), in that order.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import replace

import numpy as np

from ..errors import DistLLMError, ScenarioError
from ..placement import Placement
from ..records import REJECT_NO_CHAIN, RequestRecord, rejected_record
from ..rng import generators, seed_streams
from ..scenario.churn_section import ChurnSpec, draw_period_s
from ..view import ClusterView
from .admission import next_open_attempt
from .engine import ARRIVAL, STEP, LiveSimulation
from .failover import RECOVER, FailoverMixin, MinLatencyRouter
from .fastforward import _HB, SERVER, STEP_DONE, drop_past_soft, serve_inline
from .rebalance import LOADING, READY, REBALANCE, SERVER_ARRIVAL, SwarmDynamics
from .sessions import PREFILL

# RECOVER = 8 (live/failover.py), SERVER = 7 (live/fastforward.py)
UP, LEAVING, DOWN = 0, 1, 2
EVENT_CODES = {"join": 0, "leave": 1, "fail": 2}
# _HB: STEP / STEP_DONE payload = epoch · _HB + hop (stale steps are dropped)


class ChurnSimulation(FailoverMixin, LiveSimulation):
    """The live engine with server churn (see the module docstring).  Same API as
    :class:`LiveSimulation`, plus :meth:`set_failover_router` and :meth:`set_placement_policy`
    (``simulate`` calls both with its policies) and, for an external decision-maker
    (``external_placement = True``), :meth:`next_decision` / :meth:`decide`; ``server_log`` lists the applied
    server events ``(time_s, server, event)`` and, when ``step_log`` is set to a list before the run,
    every finished step is appended as ``(server, arrival_s, done_s)``.

    Raises :class:`~distllm_env.errors.ScenarioError` (``churn.trace``, ``churn.stable_servers``) for
    a server the instance does not have, :class:`~distllm_env.errors.DistLLMError` for a
    ``place_joining`` result out of range, else what :class:`LiveSimulation` raises."""

    def __init__(self, instance, placement_result, requests, *, churn: ChurnSpec, **kw):
        self._epoch: dict[int, int] = {}
        self._soft: list[tuple] = []      # queued SERVER / READY events, sorted (live/fastforward.py)
        self._soft_i = 0                  # entries before it are past
        super().__init__(instance, placement_result, requests, **kw)
        self._calendar = None          # every model is stepped (see the module docstring)
        self.churn = churn
        n = instance.num_servers
        self.state = [UP] * n
        self._placed = self.placement
        self._serving: dict[int, tuple[int, float]] = {}   # session → (server, step arrival)
        self._drain: dict[int, int] = {}                  # session → leaving server it finishes a step on
        self._recovering: dict[int, dict] = {}
        self._failovers: dict[int, int] = {}
        self._recovery_s: dict[int, float] = {}
        self._bans: dict[tuple[int, int], tuple[float, int]] = {}   # (session, server) → (until, count)
        self._ended = 0
        self._open_tries: dict[int, int] = {}           # request → back-off index of its last open try
        self.router, self.router_rng = MinLatencyRouter(), np.random.default_rng(0)
        self.server_log: list[tuple[float, int, str]] = []
        self.placer, self.placer_rng = None, np.random.default_rng(0)
        #: online re-placements ``(time_s, server, new first block)``
        self.block_moves: list[tuple[float, int, int]] = []
        self.step_log: list | None = None
        # external decisions (:meth:`next_decision` / :meth:`decide`): server → chosen start
        self.external_placement = False
        self.pending_join: tuple[float, int, int] | None = None
        self._decided: dict[int, int] = {}
        self._server_ev: tuple | None = None
        self._replay: tuple | None = None      # the stopped heap event, handled first once decided
        self._dirty = False
        self._failover_views: dict[tuple, ClusterView] = {}
        for ev in churn.trace:
            if ev.server >= n:
                raise ScenarioError("churn.trace", f"event at {ev.time_s:g} s names server {ev.server}; the "
                                                   f"instance has servers 0..{n - 1}")
            self._push(ev.time_s, SERVER, ev.server, EVENT_CODES[ev.event])
        self._gens = None
        if churn.distribution is not None and n:
            # the ``churn`` seed stream, one sub-stream per server (docs/contracts.md §1)
            self._gens = generators(seed_streams(instance.seed)["churn"], n)
            bad = [j for j in churn.stable_servers if j >= n]
            if bad:
                raise ScenarioError("churn.stable_servers", f"server {bad[0]} does not exist; the instance has "
                                                            f"servers 0..{n - 1}")
            stable = set(churn.stable_servers)
            stable |= set(churn.arrivals.spare_servers if churn.arrivals else ())   # drawn once arrived
            for j in range(n):
                if j not in stable:
                    self._push(self._draw(j, up=True), SERVER, j, 3 + EVENT_CODES[churn.down_event])
        #: reload times, PETALS rebalancing, arriving servers (live/rebalance.py)
        self.dynamics = SwarmDynamics(self, churn)

    # -- the protocol hook ---------------------------------------------------------------------------
    def set_placement_policy(self, policy, rng: np.random.Generator) -> None:
        """Let ``policy``'s ``place_joining`` (if it has one) choose the blocks of each (re)joining
        server, drawing from ``rng`` (docs/baselines.md "Online re-placement")."""
        self.placer, self.placer_rng = policy, rng

    def set_failover_router(self, router, rng: np.random.Generator) -> None:
        """Route failed segments with ``router`` (a :class:`~distllm_env.protocols.RoutingPolicy`)
        drawing from ``rng``; default :class:`MinLatencyRouter`."""
        self.router, self.router_rng = router, rng

    # -- external decisions (distllm/SwarmPlacement-v0) ----------------------------------------------
    def _external_start(self, t: float, j: int, count: int, what: str, event: tuple) -> int:
        """The start decided for server ``j`` (:meth:`decide`), else stop the engine: ``event`` (the heap
        entry ``(t, kind, a, b)`` being handled, nothing changed yet) is replayed once decided."""
        if j not in self._decided:
            raise _JoinPending(t, j, count, what, event)     # caught by next_decision
        return self._decided.pop(j)

    def next_decision(self):
        """External placement mode (``external_placement = True``; used by ``distllm/SwarmPlacement-v0``,
        docs/envs.md): process events up to the next decision and return it — a
        :class:`~distllm_env.workload.Request` to route (commit or reject it, as after
        :meth:`next_request`); ``("join", server, count)`` when a (re)joining server with ``count`` placed
        blocks needs its first block; ``("rebalance", server, count)`` when PETALS' balance check
        (``churn.rebalance``, docs/model.md §12.1) tells a live server to move; ``None`` once every request
        has ended.  At a join or rebalance decision the engine is stopped before the event changed
        anything (the view shows the swarm then): call :meth:`decide`.

        Raises :class:`~distllm_env.errors.DistLLMError` while a decision is still pending."""
        if self.pending_join is not None:
            raise DistLLMError(f"server {self.pending_join[1]} waits for its blocks: call decide(start) first")
        try:
            ev, self._replay = self._replay, None
            if ev is not None:             # before anything it pushed before stopping (e.g. a failover now)
                self._other_event(*ev)
            return self.next_request()
        except _JoinPending as p:
            t, j, count, what, self._replay = p.args
            self.pending_join = (t, j, count, what)
            return (what, j, count)

    def decide(self, start: int) -> None:
        """Resolve the pending decision (:meth:`next_decision`): the server hosts its ``count`` blocks from
        ``start``; the next :meth:`next_decision` replays the stopped event, which applies ``start``
        exactly as a ``place_joining`` hook returning it would be (same range check, same move
        bookkeeping).  Raises :class:`~distllm_env.errors.DistLLMError` when nothing is pending."""
        if self.pending_join is None:
            raise DistLLMError("no join is pending")
        self._decided[self.pending_join[1]] = start
        self.pending_join = None

    # -- events --------------------------------------------------------------------------------------
    def _draw(self, j: int, up: bool) -> float:
        c = self.churn
        return self.now_s + draw_period_s(self._gens[j], c.distribution, c.mean_uptime_s if up else c.mean_downtime_s,
                                          c.shape)

    def _push(self, t, kind, a, b):
        if kind == STEP:               # the base engine's push, inlined (a step is not a control event)
            heapq.heappush(self._events, (t, kind, a, self._seq, b + _HB * self._epoch.get(a, 0)))
            self._seq += 1
            return
        if kind == SERVER or kind == READY:
            # not a control event of the base engine: the fast-forward skips those of idle servers
            # (live/fastforward.py, soft_limit_s)
            entry = (t, kind, a, self._seq, b)
            heapq.heappush(self._events, entry)
            self._seq += 1
            if not self._seq & 63:
                drop_past_soft(self, self.now_s)    # keeps the list short when nothing reads it
            bisect.insort(self._soft, entry)
            return
        super()._push(t, kind, a, b)

    _push_base = LiveSimulation._push      # no epoch added (STEP_DONE payloads carry it already)
    #: serve steps inline between control events (live/fastforward.py); ``False``: every step is an
    #: event (the reference the tests compare against, tests/test_churn_fastforward.py)
    _fast_forward = True

    def _other_event(self, t: float, kind, a: int, b: int) -> None:
        if kind == STEP_DONE:
            ep, h = divmod(b, _HB)
            if ep == self._epoch.get(a, 0):
                self._step_done(t, self.sessions[a], h)
        elif kind == SERVER:
            self._server_ev = (t, SERVER, a, b)
            drawn = b >= 3
            ev = ("join", "leave", "fail")[b - 3 if drawn else b]
            self._server_event(t, a, ev)
            if drawn and self._ended < len(self.requests):
                if ev == "join":
                    self._push(self._draw(a, up=True), SERVER, a, 3 + EVENT_CODES[self.churn.down_event])
                else:
                    self._push(self._draw(a, up=False), SERVER, a, 3)
        elif kind == RECOVER:
            if a in self._recovering:
                self._attempt(t, a)
        elif kind == READY:                          # reload, rebalancing, arrivals: live/rebalance.py
            self.dynamics.ready(t, a, b)
            if self.admission.queues[a]:
                self.admission.released(t, [a])      # sessions queued on a server that was down
        elif kind == REBALANCE:
            self.dynamics.tick(t, resume=b == 1)
        elif kind == SERVER_ARRIVAL:
            self.dynamics.arrive(t)
        else:
            super()._other_event(t, kind, a, b)

    def _server_event(self, t: float, j: int, ev: str) -> None:
        if ev == "join":
            if self.state[j] in (UP, LOADING):
                return
            self._place_joining(t, j)
            self.dynamics.begin_load(t, j)           # up once its blocks are loaded
        else:
            if self.state[j] == DOWN or (self.state[j] == LEAVING and ev == "leave"):
                return
            self.state[j] = DOWN if ev == "fail" else LEAVING
            self._vacate(t, j, ev)
        self.server_log.append((t, j, ev))
        self._dirty = True             # the routers' view is updated before the next routing decision
        if self.admission.queues[j]:       # KV freed on j: its queue head may be admitted (and fail over)
            self.admission.released(t, [j])

    def _vacate(self, t: float, j: int, ev: str) -> None:
        """The sessions on server ``j`` fail over (``fail``: at once, its steps dropped; ``leave``: a
        step already on j finishes first)."""
        if ev == "fail":
            self.busy_until_s[j] = t
            self._waiting[j] = []
            self._batch[j] = None
        for sid in sorted(self.holders[j]):
            at = self._serving.get(sid)
            if ev == "leave" and at is not None and at[0] == j:
                self._drain[sid] = j          # finishes the step it has on j, then fails over
            else:
                self._break(t, sid, j)

    def _arrival_join(self, t: float, j: int) -> None:
        """Spare server ``j`` arrives at ``t``: a ``join`` event now, after which it follows the drawn
        up/down process (unless stable)."""
        drawn = self._gens is not None and j not in self.churn.stable_servers
        self._push(t, SERVER, j, 3 if drawn else EVENT_CODES["join"])

    def churn_summary(self) -> dict:
        """Churn summary keys (docs/contracts.md §6): ``num_block_moves``, ``num_rebalance_moves``,
        ``reload_s_total``, ``num_server_arrivals`` (docs/model.md §12.1)."""
        return self.dynamics.summary()

    def next_request(self):
        """As :meth:`LiveSimulation.next_request`; the view's placement shows the servers up then."""
        req = super().next_request()
        if self._dirty:
            self._mask()
        return req

    def _place_joining(self, t: float, j: int) -> None:
        """Online re-placement: a (re)joining server asks the placement policy's
        ``place_joining(server, count, view, rng) -> start`` (docs/baselines.md "Online
        re-placement") for the first of its ``count`` placed blocks; the view shows the swarm
        without it.  Without a policy hook it keeps its blocks."""
        hook = getattr(self.placer, "place_joining", None)
        p = self._placed
        count = p.counts[j]
        if self.external_placement and count:
            start = self._external_start(t, j, count, "join", self._server_ev)
        elif hook is None or count == 0:
            return
        else:
            start = hook(j, count, self.view, self.placer_rng)
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start <= p.num_blocks - count:
            raise DistLLMError(f"{getattr(self.placer, 'name', 'placement policy')}.place_joining returned "
                               f"{start!r} for server {j}; expected a start in 0..{p.num_blocks - count}")
        if int(start) != p.starts[j]:
            starts = list(p.starts)
            starts[j] = int(start)
            self._placed = Placement(tuple(starts), p.counts, p.num_blocks)
            self.block_moves.append((t, j, int(start)))

    def _mask(self) -> None:
        """Routers see only the servers that are up (docs/model.md §12)."""
        self._dirty = False
        p = self._placed
        up = np.frombuffer(bytes(self.state), dtype=np.uint8) == UP    # states are the small ints 0-3
        count_array = np.where(up, p.count_array, 0)
        counts = tuple(count_array.tolist())
        if counts == self.placement.counts and p.starts == self.placement.starts:
            return                     # e.g. a server failed and rejoined between two arrivals
        self.placement = Placement._masked(p, counts)   # p is valid: no re-validation
        # the arrays the routers read, filled in now (cached properties of the frozen Placement)
        self.placement.__dict__.update(start_array=p.start_array, count_array=count_array)
        self.view.set_placement(self.placement)

    # -- stepping --------------------------------------------------------------------------------------
    def _admit(self, t, s):
        self._reserve_kv(t, s)
        s.state = PREFILL
        if self._serial:           # lower bound of its completion (live/fastforward.py)
            self._bound_end(t + s.lead_s + s.static_first_s + (s.tokens - 1) * s.static_token_s, s.rid)
        self._push(t + s.lead_s + s.client_prefill_s + s.comm_prefill_s[0], STEP, s.rid, 0)
        for j in s.servers:                          # a server lost while the session queued
            if self.state[j] != UP and s.rid in self.holders[j]:
                self._break(t, s.rid, j)

    def _step_arrives(self, t, sid, hb):
        ep, h = divmod(hb, _HB)
        if ep != self._epoch.get(sid, 0):
            return                                   # dropped by a failover
        s = self.sessions[sid]
        if self._fast_forward and self.server_model != "batched" and sid not in self._drain:
            serve_inline(self, t, s, h, ep)          # fast-forward (live/fastforward.py)
            return
        j = s.servers[h]
        assert self.state[j] == UP, f"step of session {sid} reached server {j}, which is not up"
        self._serving[sid] = (j, t)
        if self.server_model == "batched":
            super()._step_arrives(t, sid, h)
            return
        cost = s.comp_prefill_s[h] if s.done_tokens == 0 else s.comp_decode_s[h]
        start = t
        if self.server_model == "serial":
            busy = float(self.busy_until_s[j])
            start = t if t > busy else busy
            self.busy_until_s[j] = start + cost
        super()._push(start + cost, STEP_DONE, sid, ep * _HB + h)

    def _step_done(self, done, s, h):
        at = self._serving.pop(s.rid, None)
        if self.step_log is not None and at is not None:
            self.step_log.append((at[0], at[1], done))
        super()._step_done(done, s, h)
        j = self._drain.pop(s.rid, None)
        if j is not None and s.done_tokens < s.tokens and s.rid in self.holders[j]:
            self._break(done, s.rid, j)

    def _batch_done(self, t, j):
        if self._batch[j] is None or t != self.busy_until_s[j]:
            return                                   # the batch was dropped by a failure
        super()._batch_done(t, j)

    # -- bookkeeping -----------------------------------------------------------------------------------
    def _bound_end(self, lb: float, sid: int) -> None:
        """A lower bound ``lb`` (s) of session ``sid``'s completion, less a rounding margin (the
        engine's ``_end_bounds``; read by the fast-forward's alone rule)."""
        heapq.heappush(self._end_bounds, (lb - 1e-9 * abs(lb) - 1e-9, sid))

    def _release(self, t, sid):
        super()._release(t, sid)
        self._ended += 1

    def reject(self, request, reason, route=None):
        """As :meth:`LiveSimulation.reject`, except ``no_feasible_chain``: the client retries opening
        the session at its PETALS back-off instants (the request is presented to the router again then)
        until the session timeout (:func:`~distllm_env.live.admission.next_open_attempt`); the returned
        record is then ``pending``."""
        if reason == REJECT_NO_CHAIN:
            self._check_current(request)
            nxt = next_open_attempt(request.arrival_s, self.now_s, self._open_tries.get(request.id, 0),
                                    self.churn.session_timeout_s)
            if nxt is not None:
                self._open_tries[request.id] = nxt[0]
                super()._push(nxt[1], ARRIVAL, request.id, nxt[0])
                self.current_request = None
                return replace(rejected_record(request, ""), status="pending")
        rec = super().reject(request, reason, route)
        self._ended += 1
        return rec

    def _record(self, r, s, status, start_s, first_s, end_s) -> RequestRecord:
        rec = super()._record(r, s, status, start_s, first_s, end_s)
        n = self._failovers.get(r.id, 0)
        return replace(rec, failovers=n, recovery_s=self._recovery_s.get(r.id, 0.0)) if n else rec


class _JoinPending(Exception):
    """Internal: a join or rebalance event waits for an external decision
    (:meth:`ChurnSimulation.next_decision`)."""


__all__ = ["ChurnSimulation", "MinLatencyRouter"]

"""Session failover under churn (docs/model.md §12; docs/simulator.md "Churn").

:class:`FailoverMixin` holds the failover methods of :class:`~distllm_env.live.churn.ChurnSimulation`
(PETALS ``src/petals/client/inference_session.py`` ``step`` and
``src/petals/client/routing/sequence_manager.py``; the rules are in live/churn.py's docstring): a
session losing a hop (``_break``), the replacement segment asked of the failover router over the
usable servers (``_usable_placement``, ``_segment``, ``_joined``), the KV it takes (``_added_blocks``,
``_splice``), the retries at the PETALS back-off instants (``_attempt``) and the end of a recovery
(``_resume``, ``_give_up``).  :class:`MinLatencyRouter` is the default failover router.  Split out of
live/churn.py (same code, no behaviour change).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..backoff import backoff_instant_s
from ..chains import Hop, HopCost, Route, check_route
from ..errors import NoFeasibleChain
from ..perf import prefill_comm_s, prefill_hop_cost_s
from ..placement import Placement
from ..records import REJECT_FAILOVER_TIMEOUT
from ..view import ClusterView
from .event_kinds import STEP
from .rebalance import UP
from .sessions import DECODE, DONE, PREFILL, build_session

RECOVER = 8            # a failover attempt's heap kind (SERVER = 7: live/fastforward.py)


class _FailoverState:
    """What :class:`ClusterView` reads while a failed segment is routed: the engine's state with a
    placement restricted to the usable servers and the segment request as the request being routed."""

    def __init__(self, eng, placement: Placement, request):
        self.instance, self.placement, self.cache_policy = eng.instance, placement, eng.cache_policy
        self.capacity_bytes, self.book, self.now_s = eng.capacity_bytes, eng.book, eng.now_s
        self.current_request = request
        self.active_sessions_on, self.queued_work_s = eng.active_sessions_on, eng.queued_work_s


class MinLatencyRouter:
    """Fallback failover router (PETALS ``make_sequence(mode="min_latency")``): the chain of least
    per-token decode cost Σ (t_cj + τ_j·m_ij) from ``request.client_blocks``."""

    name, family = "min-latency", "petals"

    def route(self, request, view, rng):
        c = request.client
        dag = view.feasible_dag(c, request.client_blocks)
        cost = view.decode_cost(c)
        extra = view.unreachable_edge_cost_s(c, dag)
        if extra is not None:
            cost = HopCost(cost.fixed_s, cost.per_block_s, extra)
        route, total = dag.shortest(cost)
        if not math.isfinite(total):
            raise NoFeasibleChain("no reachable chain")
        return route


class FailoverMixin:
    """Failover of :class:`~distllm_env.live.churn.ChurnSimulation` (a mixin placed before
    :class:`~distllm_env.live.engine.LiveSimulation` in its bases: ``super()._push`` here is the base
    engine's push, as it was in ChurnSimulation)."""

    def _break(self, t: float, sid: int, j: int) -> None:
        """Session ``sid`` loses its hop on server ``j`` at ``t``."""
        s = self.sessions[sid]
        h = self.holders[j].pop(sid)
        self.used_bytes[j] -= s.need_bytes[h]
        self._failovers[sid] = self._failovers.get(sid, 0) + 1
        _, count = self._bans.get((sid, j), (0.0, 0))
        self._bans[(sid, j)] = (t + self.churn.ban_s * 2.0 ** count, count + 1)
        rec = self._recovering.get(sid)
        if rec is None:
            self._epoch[sid] = self._epoch.get(sid, 0) + 1
            for k in set(s.servers):
                if self._waiting[k]:
                    self._waiting[k] = [x for x in self._waiting[k] if x[0] != sid]
                b = self._batch[k]
                if b:
                    b[:] = [x for x in b if x[0] != sid]
            self._serving.pop(sid, None)
            self._drain.pop(sid, None)
            rec = self._recovering[sid] = {"fail_s": t, "attempt": 0, "broken": set(), "fresh": {}}
            super()._push(t, RECOVER, sid, 0)
        rec["broken"].add(j)
        rec["fresh"].pop(j, None)

    def _usable_placement(self, t: float, sid: int) -> Placement:
        p = self._placed
        counts = tuple(0 if (self.state[j] != UP or self._bans.get((sid, j), (0.0, 0))[0] > t) else c
                       for j, c in enumerate(p.counts))
        return Placement._masked(p, counts)

    def _segment(self, t: float, sid: int, hop: Hop) -> list[Hop] | None:
        """Replacement hops for ``hop`` (blocks first..last), or ``None`` when no chain exists now."""
        true = self._true[sid]
        placement = self._usable_placement(t, sid)
        req = replace(self.requests[sid], client_blocks=hop.first_block)
        key = (placement.starts, placement.counts)
        view = self._failover_views.get(key)
        if view is None:               # sessions failed by one event share one view (and its chain DAGs)
            if len(self._failover_views) >= 16:
                self._failover_views.clear()
            view = self._failover_views[key] = ClusterView(_FailoverState(self, placement, req))
        view._sim.now_s, view._sim.current_request = t, req
        try:
            route = self.router.route(req, view, self.router_rng)
        except NoFeasibleChain:
            return None
        check_route(placement, route, hop.first_block)
        if not self.reachable(true.client, [x.server for x in route.hops]):
            return None
        out = []
        for x in route.hops:
            if x.first_block > hop.last_block:
                break
            out.append(Hop(x.server, x.first_block, min(x.last_block, hop.last_block)))
        return out

    def _attempt(self, t: float, sid: int) -> None:
        rec = self._recovering[sid]
        s = self.sessions[sid]
        cs = self.churn
        if t - rec["fail_s"] > cs.idle_timeout_s or t - s.start_s > cs.session_timeout_s:
            self._give_up(t, sid)
            return
        for j in s.servers:                          # e.g. a leaving server it was finishing a step on
            if self.state[j] != UP and sid in self.holders[j]:
                self._break(t, sid, j)
        for j in sorted(rec["broken"], key=s.servers.index):
            h = s.servers.index(j)
            new = self._segment(t, sid, s.route.hops[h])
            hops = None if new is None else self._joined(sid, s.route.hops, h, new)
            if hops is None:
                break
            added = self._added_blocks(sid, hops, rec["broken"] - {j})
            per = s.per_block_bytes
            if any(self.used_bytes[k] + m * per > self.capacity_bytes[k] for k, m in added.items()):
                break
            s = self._splice(sid, hops, added)
            rec["broken"].discard(j)
            for k, m in added.items():
                rec["fresh"][k] = rec["fresh"].get(k, 0) + m
        if rec["broken"]:
            k = rec["attempt"] + 1
            while rec["fail_s"] + backoff_instant_s(k) <= t:
                k += 1
            rec["attempt"] = k
            super()._push(rec["fail_s"] + backoff_instant_s(k), RECOVER, sid, 0)
            return
        self._resume(t, sid)

    def _joined(self, sid: int, hops, h: int, new: list[Hop]) -> tuple[Hop, ...] | None:
        """``hops`` with hop ``h`` replaced by ``new``.  A new hop on the server of the hop just
        before (after) it extends that hop instead; any other server already held by the session
        makes the candidate unusable now (``None``): a session holds one span per server."""
        prev, nxt, new = list(hops[:h]), list(hops[h + 1:]), list(new)
        if new and prev and new[0].server == prev[-1].server:
            prev[-1] = Hop(prev[-1].server, prev[-1].first_block, new[0].last_block)
            new = new[1:]
        if new and nxt and new[-1].server == nxt[0].server:
            nxt[0] = Hop(nxt[0].server, new[-1].first_block, nxt[0].last_block)
            new = new[:-1]
        out = tuple(prev + new + nxt)
        servers = [x.server for x in out]
        if len(set(servers)) != len(servers):
            return None
        return out

    def _added_blocks(self, sid: int, hops, still_broken) -> dict[int, int]:
        """Blocks each server of ``hops`` takes beyond what it already holds for ``sid`` (the hops of
        ``still_broken`` servers, replaced later, take nothing)."""
        s = self.sessions[sid]
        held = {j: s.blocks[h] for j, h in ((j, self.holders[j].get(sid)) for j in s.servers) if h is not None}
        return {x.server: x.blocks - held.get(x.server, 0) for x in hops
                if x.server not in still_broken and x.blocks > held.get(x.server, 0)}

    def _splice(self, sid: int, hops, added: dict[int, int]) -> object:
        """Give session ``sid`` the route ``hops`` (KV taken on the servers of ``added``); the rebuilt
        session keeps its progress."""
        old = self.sessions[sid]
        held = {j: old.need_bytes[h] for j, h in ((j, self.holders[j].get(sid)) for j in old.servers) if h is not None}
        s = build_session(self.instance, self._true[sid], Route(tuple(hops)), self._client_parts.get(sid), old.lead_s)
        for f in ("state", "done_tokens", "start_s", "first_token_s", "last_token_s", "completion_s"):
            setattr(s, f, getattr(old, f))
        self.sessions[sid] = s
        for k, (j, need) in enumerate(zip(s.servers, s.need_bytes)):
            if j in held:
                self.used_bytes[j] += need - held[j]
                self.holders[j][sid] = k
            elif j in added:
                self.used_bytes[j] += need
                self.holders[j][sid] = k
        return s

    def _resume(self, t: float, sid: int) -> None:
        rec = self._recovering.pop(sid)
        s = self.sessions[sid]
        inst = self.instance
        true = self._true[sid]
        if s.done_tokens == 0:                       # failed during prefill: prefill again on the new chain
            s.state = PREFILL
            t_r = t + inst.initial_delay_s
            if self._serial:
                self._bound_end(t_r + s.static_first_s + (s.tokens - 1) * s.static_token_s, sid)
            self._push(t_r + s.client_prefill_s + s.comm_prefill_s[0], STEP, sid, 0)
        else:
            length = true.prompt_tokens + s.done_tokens
            re = 0.0
            for j in s.servers:
                m = rec["fresh"].get(j, 0)
                if m:
                    comm = float(prefill_comm_s(inst.rtt_s[true.client, j], inst.prefill_overhead_slope_s,
                                                inst.prefill_overhead_intercept_s, length))
                    re += float(prefill_hop_cost_s(comm, float(inst.tau_prefill_s(length, np.array([j]))[0]), m))
            t_r = t + inst.initial_delay_s + re
            if self._serial:           # the new chain may be faster: a new lower bound of its completion
                self._bound_end(t_r + (s.tokens - s.done_tokens) * s.static_token_s, sid)
            s.state = DECODE
            self._push(t_r + s.client_token_s + s.comm_decode_s[0], STEP, sid, 0)
        self._recovery_s[sid] = self._recovery_s.get(sid, 0.0) + (t_r - rec["fail_s"])

    def _give_up(self, t: float, sid: int) -> None:
        rec = self._recovering.pop(sid)
        self._recovery_s[sid] = self._recovery_s.get(sid, 0.0) + (t - rec["fail_s"])
        s = self.sessions[sid]
        s.state = DONE                 # ended (its completion bound is dropped, live/fastforward.py)
        for j in set(s.servers):
            h = self.holders[j].pop(sid, None)
            if h is not None:
                self.used_bytes[j] -= s.need_bytes[h]
        self.active_sessions -= 1
        nan = math.nan
        rec = self._record(self._true[sid], s, "rejected", nan, nan, nan)
        self.records[sid] = replace(rec, reason=REJECT_FAILOVER_TIMEOUT, wait_s=nan)
        self._ended += 1
        self._try_admit(t)


__all__ = ["FailoverMixin", "MinLatencyRouter", "RECOVER"]

"""``distllm/RequestRouting-v0``: route each arriving request on one of K candidate chains.

Decision epochs are the arrivals of the simulator's event queue (Park-style event-driven stepping):
``reset`` advances the :class:`~distllm_env.simulator.Simulation` to the first arrival, ``step(k)``
commits the request on candidate ``k`` and advances to the next arrival.  The placement is fixed for
the episode (``config["placement"]``, default :func:`distllm_env.registry.default_placement`).

Candidates (docs/contracts.md §9): the K Lemma-1-feasible chains of lowest **static** cost
Σ_hops [t^I_cj + (l−1)·t_cj] + [τ^I_j + (l−1)·τ_j]·m_ij (:meth:`ClusterView.static_cost`, no waiting
term), cheapest first, from :meth:`ClusterView.k_cheapest`.  Each carries its **current** waiting
time, start − now, where start is exactly the start the simulator would give the request on that
chain now (:meth:`Simulation.evaluate` semantics, reservation book and back-off included).  Because
the order is static, no candidate position encodes a baseline's (waiting-aware) answer.

Reward = −(completion_s − arrival_s) / output_tokens of the routed request, which is known at
decision time under the reservation semantics of docs/contracts.md §8; a request that can never fit on
the chosen chain is rejected (``insufficient_memory``) and costs ``config["rejection_penalty"]``
seconds per token.  Under the live engine (contended ``server_model`` or unknown output lengths,
docs/model.md §11) times are not known at commit, so the reward is DELAYED: the reward of a step is
−Σ (completion_s − arrival_s) / output_tokens over the requests whose sessions ended since the
previous step (``info["completed_ids"]``), minus the rejection penalty of this step's request; every
completed request is counted exactly once, all of them by the last step.  ``info["per_token_time_s"]``
there is the commit-time PREDICTION for the routed request, per declared token.  The episode
terminates after the scenario's ``num_requests`` arrivals.

Load features (``config["load_features"]``, on for the ids of the live-engine presets, issue 13
item 3): per candidate, its hops' active sessions and queued step time (max and sum over the hops),
least free KV fraction, recent observed per-token step time, and ws-rr-load's load-aware per-token
estimate (docs/envs.md "Load features").  Admission (``config["defer_s"]``): one extra action K,
"wait ``defer_s`` seconds and decide again"; the request is offered again at now + ``defer_s`` and keeps
its arrival time, so the wait counts in its TTFT and per-token time (docs/envs.md "Defer action").

This module holds the configuration, the episode and the stepping; spaces, masks, observations,
candidate helpers and rendering are in :mod:`~distllm_env.envs.routing_obs`.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..api import place
from ..chains import Route
from ..errors import NoFeasibleChain, ScenarioError
from ..metrics import summarize
from ..placement import CachePolicy, PlacementResult
from ..registry import default_placement
from ..simulator import Simulation, new_simulation  # noqa: F401
from .base import COMMON_CONFIG, DistLLMEnv, _float_at_least, _int_at_least, _optional, _policy_spec
from .routing_load import MAX_SESSIONS, STEP_EWMA_ALPHA, RoutingLoadMixin
from .routing_obs import RoutingObservationMixin


def _cache_policy(key: str, value: Any) -> Any:
    if value is None:
        return None
    try:
        return str(CachePolicy.parse(value))
    except (ValueError, TypeError) as exc:
        raise ScenarioError(f"config.{key}", str(exc)) from None


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ScenarioError(f"config.{key}", f"expected true or false, got {value!r}")
    return bool(value)


ROUTING_CONFIG = dict(COMMON_CONFIG) | {
    "K": (8, _int_at_least(1), "number of candidate chains (padding of every per-candidate array)"),
    "placement": (None, _policy_spec, "fixed placement of the episode: a placement name, 'module:Class' or "
                                      "object; None = distllm_env.registry.default_placement(scenario)"),
    "cache_policy": (None, _optional(_cache_policy), "None = the placement's own cache policy; else "
                                                     "'leftover' or 'fixed_pool(T)'"),
    "rejection_penalty": (10.0, _float_at_least(0.0), "per-token time (s) charged for a rejected request"),
    "mask_unfit": (True, _bool, "mask candidates that can never fit the request's KV cache (unless all of "
                                "them are unfit, then all stay valid and any choice is rejected)"),
    "max_tokens": (65536, _int_at_least(1), "upper clip of the token-count features"),
    "load_features": (False, _bool, "add the per-candidate load features (active sessions, queued work, "
                                    "free KV, recent step times, ws-rr-load's estimate; docs/envs.md)"),
    "defer_s": (None, _optional(_float_at_least(0.0, strict=True)),
                "None = off; else one extra action K: wait defer_s seconds and decide again"),
    "max_defers": (8, _int_at_least(1), "defers allowed per request (the mask disables defer after them)"),
}


@dataclass
class _Candidates:
    """Static data of the K cheapest chains for one (client, prompt, output) key."""

    routes: list[Route]
    static_s: np.ndarray          # (n,)
    hops: list[tuple[tuple[int, int], ...]]   # per candidate: (server, KV bytes) per hop
    hold_s: np.ndarray            # (n,) session hold time: initial + allocation delay + service
    service_s: np.ndarray         # (n,)
    num_hops: np.ndarray          # (n,)
    blocks_frac: np.ndarray       # (K·S,) m_ij / L, row-major per candidate
    index: dict                   # route.hops -> candidate index
    hop_server: np.ndarray | None = None    # (H,) servers of every candidate's hops, candidate by candidate
    hop_blocks: np.ndarray | None = None    # (H,) m_ij of those hops
    seg: np.ndarray | None = None           # (n,) index of each candidate's first hop in hop_server


class RequestRoutingEnv(RoutingObservationMixin, RoutingLoadMixin, DistLLMEnv):
    """Route every arriving request on one of ``K`` candidate chains (docs/envs.md)."""

    decision_name = "RequestRouting"
    default_scenario = "paper-clustered"
    CONFIG = ROUTING_CONFIG

    # -- episode -----------------------------------------------------------------------------------
    def _placement_for(self, seed: int, inst) -> tuple[PlacementResult, str]:
        cache = self.__dict__.setdefault("_placement_cache", {})
        hit = cache.get(seed)
        if hit is None or hit[0] is not inst:
            spec = self.config["placement"]
            field = "config.placement" if spec is not None else "policy_defaults.placement"
            if spec is None:
                spec = default_placement(self.scenario, allow_imports=self.config["allow_imports"])
            result, name, _ = place(inst, spec, self.placement_rng, self.scenario, field=field)
            if self.config["cache_policy"] is not None:
                result = PlacementResult(result.placement, CachePolicy.parse(self.config["cache_policy"]),
                                         result.diagnostics)
            hit = cache[seed] = (inst, result, name)
            if len(cache) > self._episode_cache_size:
                cache.pop(next(iter(cache)))
        return hit[1], hit[2]

    def _start_episode(self, seed: int) -> None:
        inst, reqs = self._episode_data(seed)
        self.instance = inst
        self.placement_rng, self.routing_rng, self.env_rng = self.policy_streams(seed)
        self.placement_result, self.placement_name = self._placement_for(seed, inst)
        sc = self.scenario
        self.sim = new_simulation(inst, self.placement_result, reqs, reservation=sc.simulator.reservation,
                                  backoff=sc.simulator.backoff, allocation_delay_s=self.allocation_delay_s())
        self.view = self.sim.view
        S, N = self.config["max_servers"], inst.num_servers
        self._server_mask = np.zeros(S, dtype=np.float32)
        self._server_mask[:N] = 1
        self._set_placement_features(self.sim.placement)
        self._tau = np.zeros(S, dtype=np.float32)
        self._tau[:N] = inst.tau_decode_s
        self._capacity = np.asarray(self.sim.capacity_bytes, dtype=np.float64)
        self._releases: list[list[float]] = [[] for _ in range(N)]
        self._num_requests = len(reqs)
        self._routed = 0
        self._last_route: Route | None = None
        self._skipped = 0
        self._live = hasattr(self.sim, "completed_ids")      # LiveSimulation: delayed reward (module docstring)
        self._done_cursor = 0
        self._cap_list = [float(c) for c in self._capacity]
        self._defers: dict[int, int] = {}
        if self.config["load_features"]:
            self._start_load(inst)
        self._advance()

    def _set_placement_features(self, pl) -> None:
        """Observation features of the placement in force, and a fresh candidate cache.  Under churn
        (docs/model.md §12) the simulator's placement changes when servers go down, come back or take
        new blocks; candidates computed on an older placement would no longer be chains."""
        S, N, L = self.config["max_servers"], self.instance.num_servers, self.instance.num_blocks
        self._placement_in_force = pl
        self._start_frac = np.zeros(S, dtype=np.float32)
        self._start_frac[:N] = np.where(pl.count_array > 0, pl.start_array, 0) / L
        self._count_frac = np.zeros(S, dtype=np.float32)
        self._count_frac[:N] = pl.count_array / L
        self._cand_cache: dict[tuple[int, int, int], _Candidates] = {}

    def _candidates_for(self, req) -> _Candidates:
        key = (req.client, req.prompt_tokens, req.output_tokens)
        entry = self._cand_cache.get(key)
        if entry is not None:
            return entry
        K, S, L = self.config["K"], self.config["max_servers"], self.instance.num_blocks
        view, sim = self.view, self.sim
        found = view.k_cheapest(req.client, K, view.static_cost(req), req.client_blocks)
        # never offer a chain through a server the client cannot reach (the simulator would reject it,
        # ``unreachable``), whatever the cost model says: such candidates are masked out by omission
        reach = view.reachable(req.client)
        if not reach.all():
            found = [(r, c) for r, c in found if all(reach[h.server] for h in r.hops)]
            if not found:
                raise NoFeasibleChain(f"client {req.client} reaches no complete chain")
        routes = [r for r, _ in found]
        n = len(routes)
        hops, hold, service = [], np.zeros(n), np.zeros(n)
        blocks = np.zeros((K, S), dtype=np.float32)
        for k, r in enumerate(routes):
            out = sim.evaluate(req, r)          # static parts only: hops' KV bytes, hold and service time
            hops.append(out.hops)
            hold[k], service[k] = out.hold_s, out.service_s
            for h in r.hops:
                blocks[k, h.server] = h.blocks / L
        entry = _Candidates(routes=routes, static_s=np.array([c for _, c in found]), hops=hops, hold_s=hold,
                            service_s=service, num_hops=np.array([len(r) for r in routes], dtype=np.float32),
                            blocks_frac=blocks.ravel(), index={r.hops: k for k, r in enumerate(routes)})
        if self.config["load_features"]:
            entry.hop_server = np.array([h.server for r in routes for h in r.hops], dtype=np.intp)
            entry.hop_blocks = np.array([h.blocks for r in routes for h in r.hops], dtype=float)
            entry.seg = np.concatenate(([0], np.cumsum([len(r.hops) for r in routes])[:-1])).astype(np.intp)
        self._cand_cache[key] = entry
        return entry

    def _advance(self) -> None:
        """Pop events up to the next arrival and compute its candidates and their start times.  A
        request with no feasible chain at all (every chain has an infinite cost, e.g. a client cut off
        from the servers it needs) is rejected (``no_feasible_chain``) without a decision, as
        :func:`distllm_env.api.run_routing` does; ``info["skipped"]`` of the step counts them."""
        while True:
            req = self.sim.next_request()
            self.request = req
            if self.sim.placement is not self._placement_in_force:
                self._set_placement_features(self.sim.placement)
            if req is None:
                self._cands = None
                self._starts = []
                return
            try:
                self._cands = self._candidates_for(req)
            except NoFeasibleChain:
                self.sim.reject(req, "no_feasible_chain")
                self._routed += 1
                self._skipped += 1
                continue
            self._starts = self.sim.start_times_s(self._cands.hops, self._cands.hold_s)
            return

    # -- stepping ----------------------------------------------------------------------------------
    def _apply(self, action: int) -> tuple[float, bool, dict]:
        req, cands = self.request, self._cands
        if action == self.defer_action:
            return self._defer(req)
        route = cands.routes[action]
        rec = self.sim.commit(req, route)
        self._routed += 1
        self._last_route = route
        info: dict[str, Any] = {"request_id": req.id, "candidate": action, "rejected": rec.status == "rejected"}
        if rec.completed or rec.status == "pending":   # pending: live engine, predicted times at commit
            # a pending prediction is per DECLARED token: the true length stays hidden until the end
            tokens = rec.declared_tokens if rec.status == "pending" else rec.output_tokens
            per_token = (rec.completion_s - rec.arrival_s) / tokens
            reward = -per_token
            info.update(per_token_time_s=per_token, wait_s=rec.wait_s, completion_s=rec.completion_s)
            info["reward_components"] = {"per_token_time": -per_token, "rejection": 0.0}
            for h in route.hops:
                heapq.heappush(self._releases[h.server], rec.completion_s)
        else:
            pen = self.config["rejection_penalty"]
            reward = -pen
            info.update(per_token_time_s=math.nan, wait_s=math.nan, completion_s=math.nan)
            info["reward_components"] = {"per_token_time": 0.0, "rejection": -pen}
        skipped = self._skipped
        self._advance()
        info["skipped"] = self._skipped - skipped
        if self._live:      # delayed reward: the requests whose sessions ENDED while advancing
            per_token_sum = self._completed_per_token_sum(info)
            reward = -per_token_sum + info["reward_components"]["rejection"]
            info["reward_components"]["per_token_time"] = -per_token_sum
        terminated = self.request is None
        if terminated:
            info["summary"] = self.episode_summary()
        return reward, terminated, info

    def _defer(self, req) -> tuple[float, bool, dict]:
        """The defer action: ``req`` is offered again at now + ``defer_s`` (it keeps its arrival time);
        reward 0 but, under the live engine, the delayed reward of the sessions that ended meanwhile."""
        self._defers[req.id] = self._defers.get(req.id, 0) + 1
        self.sim.defer(req, self.sim.now_s + self.config["defer_s"])
        info: dict[str, Any] = {"request_id": req.id, "candidate": None, "deferred": True, "rejected": False,
                                "per_token_time_s": math.nan, "wait_s": math.nan, "completion_s": math.nan,
                                "reward_components": {"per_token_time": 0.0, "rejection": 0.0}}
        skipped = self._skipped
        self._advance()
        info["skipped"] = self._skipped - skipped
        reward = 0.0
        if self._live:
            per_token_sum = self._completed_per_token_sum(info)
            reward = -per_token_sum
            info["reward_components"]["per_token_time"] = -per_token_sum
        terminated = self.request is None
        if terminated:
            info["summary"] = self.episode_summary()
        return reward, terminated, info

    def _completed_per_token_sum(self, info: dict) -> float:
        """Live engine: Σ (completion_s − arrival_s) / output_tokens (s) over the requests whose sessions
        ended since the previous step, each counted once (``info["completed_ids"]`` lists them)."""
        ids, recs = self.sim.completed_ids, self.sim.records
        new = ids[self._done_cursor:]
        self._done_cursor = len(ids)
        info["completed_ids"] = list(new)
        if self.config["load_features"]:
            self._update_step_ewma(new)
        return float(sum((recs[i].completion_s - recs[i].arrival_s) / recs[i].output_tokens for i in new))

    def episode_summary(self) -> dict:
        """Summary metrics of the finished episode (docs/contracts.md §6), numeric keys only."""
        s = summarize(self.sim.finished_records(), self.sim.capacity_bytes)
        keys = ("mean_per_token_time_s", "ttft_p50_s", "ttft_p95_s", "wait_mean_s", "num_completed", "num_rejected")
        return {k: s[k] for k in keys}

    @property
    def records(self):
        """The simulator's per-request records so far (``None`` for requests not yet routed)."""
        return list(self.sim.records)


__all__ = ["MAX_SESSIONS", "ROUTING_CONFIG", "RequestRoutingEnv", "STEP_EWMA_ALPHA"]

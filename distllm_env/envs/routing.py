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
from .render import bar, coverage_load_rgb
from .routing_load import MAX_SESSIONS, STEP_EWMA_ALPHA, RoutingLoadMixin, load_layout
from .spaces import Feature, ObsLayout

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


class RequestRoutingEnv(RoutingLoadMixin, DistLLMEnv):
    """Route every arriving request on one of ``K`` candidate chains (docs/envs.md)."""

    decision_name = "RequestRouting"
    default_scenario = "paper-clustered"
    CONFIG = ROUTING_CONFIG

    # -- spaces ------------------------------------------------------------------------------------
    def _build_spaces(self) -> None:
        from gymnasium import spaces

        S, K, T = self.config["max_servers"], self.config["K"], self.config["max_time_s"]
        feats = [
            Feature("server_mask", S, 0, 1, "1/0", "1 for a real server, 0 for padding"),
            Feature("server_start_frac", S, 0, 1, "fraction of L", "first hosted block a_j / L"),
            Feature("server_count_frac", S, 0, 1, "fraction of L", "hosted blocks m_j / L"),
            Feature("server_tau_decode_s", S, 0, 10, "s", "decode time per block per token τ_j"),
            Feature("server_rtt_s", S, 0, 10, "s", "RTT between the request's client and server j"),
            Feature("server_free_frac", S, 0, 1, "fraction", "KV bytes free now / KV capacity (0 if none)"),
            Feature("server_next_release_s", S, 0, T, "s",
                    "time until the next committed session on j completes (0 if none)"),
            Feature("cand_mask", K, 0, 1, "1/0", "1 for a valid candidate chain"),
            Feature("cand_static_s", K, 0, T, "s",
                    "static cost Σ[t^I + (l−1)t] + [τ^I + (l−1)τ]·m_ij of the chain (candidates sorted by it)"),
            Feature("cand_wait_s", K, 0, T, "s",
                    "waiting time start − now the request would get on the chain now (max_time_s if never)"),
            Feature("cand_fits", K, 0, 1, "1/0", "1 if the request's KV cache can ever fit on the chain"),
            Feature("cand_hops", K, 0, S, "servers", "number of servers on the chain"),
            Feature("cand_blocks_frac", K * S, 0, 1, "fraction of L",
                    "row-major K×S: blocks m_ij server j processes on candidate k, / L"),
            Feature("request_tokens", 2, 0, self.config["max_tokens"], "tokens",
                    "prompt and output tokens of the request"),
            Feature("progress", 1, 0, 1, "fraction", "requests already routed / requests of the episode"),
        ]
        if self.config["load_features"]:
            feats += load_layout(S, K, T)
        if self.config["defer_s"] is not None:
            feats += [
                Feature("request_defers_frac", 1, 0, 1, "fraction", "times this request was deferred / max_defers"),
                Feature("request_age_s", 1, 0, T, "s", "now − the request's arrival (its waiting so far)"),
            ]
        self.layout = ObsLayout(feats)
        self.observation_space = self.layout.space()
        self.defer_action = K if self.config["defer_s"] is not None else None
        self.action_space = spaces.Discrete(K + (self.defer_action is not None))

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

    # -- masks and observations --------------------------------------------------------------------
    def _current_mask(self) -> np.ndarray:
        mask = np.zeros(self.config["K"], dtype=bool)
        if self.request is None:
            if self.defer_action is not None:
                mask = np.zeros(self.action_space.n, dtype=bool)
            mask[0] = True          # terminal state: a dummy valid action, so the mask is never empty
            return mask
        fits = np.array([s is not None for s in self._starts], dtype=bool)
        if self.config["mask_unfit"] and fits.any():
            mask[: len(fits)] = fits
        else:
            mask[: len(fits)] = True
        if self.defer_action is not None:
            out = np.zeros(self.action_space.n, dtype=bool)
            out[: mask.size] = mask
            out[self.defer_action] = self._defers.get(self.request.id, 0) < self.config["max_defers"]
            return out
        return mask

    def _observation(self) -> dict[str, np.ndarray]:
        obs = self.layout.zeros()
        N, now, T = self.instance.num_servers, self.sim.now_s, self.config["max_time_s"]
        obs["server_mask"][:] = self._server_mask
        obs["server_start_frac"][:] = self._start_frac
        obs["server_count_frac"][:] = self._count_frac
        obs["server_tau_decode_s"][:] = self._tau
        free_bytes, cap = self.sim.book.free_bytes, self._cap_list
        free_f = [0.0] * N
        nxt_s = [0.0] * N
        heappop = heapq.heappop
        for j, heap in enumerate(self._releases):
            if cap[j] > 0:
                free_f[j] = free_bytes(j, now) / cap[j]
            while heap and heap[0] <= now:
                heappop(heap)
            if heap:
                nxt_s[j] = heap[0] - now
        obs["server_free_frac"][:N] = free_f
        obs["server_next_release_s"][:N] = nxt_s
        obs["progress"][0] = self._routed / max(self._num_requests, 1)
        req = self.request
        if req is not None:
            obs["server_rtt_s"][:N] = self.instance.rtt_s[req.client]
            c = self._cands
            n = len(c.routes)
            obs["cand_mask"][:n] = 1
            obs["cand_static_s"][:n] = c.static_s
            obs["cand_wait_s"][:n] = [T if s is None else s - now for s in self._starts]
            obs["cand_fits"][:n] = [s is not None for s in self._starts]
            obs["cand_hops"][:n] = c.num_hops
            obs["cand_blocks_frac"][:] = c.blocks_frac
            obs["request_tokens"][:] = (req.prompt_tokens, req.output_tokens)
            if self.config["load_features"]:
                self._load_observation(obs, req, np.asarray(free_f))
            if self.defer_action is not None:
                obs["request_defers_frac"][0] = self._defers.get(req.id, 0) / self.config["max_defers"]
                obs["request_age_s"][0] = now - req.arrival_s
        return self.layout.finish(obs)

    def _reset_info(self) -> dict:
        return {"placement": self.placement_name, "num_requests": self._num_requests}

    # -- helpers for env policies ------------------------------------------------------------------
    @property
    def candidate_routes(self) -> list[Route]:
        return [] if self._cands is None else list(self._cands.routes)

    def candidate_index(self, route: Route | None) -> int | None:
        """Index of ``route`` among the current candidates (``None`` if it is not one)."""
        if route is None or self._cands is None:
            return None
        return self._cands.index.get(route.hops)

    def expected_per_token_s(self) -> np.ndarray:
        """Per candidate, the per-token time the request would get: (start + hold − arrival)/l_out
        (``inf`` for a chain it never fits)."""
        if self._cands is None:
            return np.zeros(0)
        req, c = self.request, self._cands
        return np.array([math.inf if s is None else (s + c.hold_s[k] - req.arrival_s) / req.output_tokens
                         for k, s in enumerate(self._starts)])

    def greedy_action(self) -> int:
        """The valid candidate with the least expected per-token time (lowest index on ties)."""
        est = self.expected_per_token_s()
        if est.size == 0:
            return 0
        est = np.where(self._mask[: est.size], est, np.inf)
        return int(np.argmin(est)) if np.isfinite(est).any() else int(np.argmax(self._mask))

    # -- rendering ---------------------------------------------------------------------------------
    def _render_text(self) -> str:
        sim, inst = self.sim, self.instance
        lines = [f"RequestRouting  scenario={self.scenario.name} seed={self.scenario_seed} "
                 f"placement={self.placement_name}  t={sim.now_s:.2f}s  routed {self._routed}/{self._num_requests}"]
        req = self.request
        if req is None:
            lines.append("episode finished")
        else:
            lines.append(f"request {req.id}: client {req.client}, {req.prompt_tokens}+{req.output_tokens} tokens")
            est = self.expected_per_token_s()
            for k, r in enumerate(self._cands.routes):
                s = self._starts[k]
                wait = "never" if s is None else f"{s - sim.now_s:8.2f}s"
                flag = " " if self._mask[k] else "x"
                lines.append(f" {flag}[{k}] static {self._cands.static_s[k]:8.2f}s  wait {wait}  "
                             f"→ {est[k]:.3f} s/token  {r.to_text()}")
        pl = self.placement_result.placement
        for j in range(inst.num_servers):
            cap = self._capacity[j]
            frac = 1 - sim.book.free_bytes(j, sim.now_s) / cap if cap > 0 else 0.0
            span = f"{pl.starts[j]:3d}-{pl.starts[j] + pl.counts[j] - 1:3d}" if pl.counts[j] else "   none"
            lines.append(f"  s{j:<3d} {inst.servers[j].gpu.name:<14s} blocks {span}  KV {bar(frac)} {frac:5.1%}")
        return "\n".join(lines)

    def _render_rgb(self) -> np.ndarray:
        inst, sim = self.instance, self.sim
        pl = self.placement_result.placement
        load = [1 - sim.book.free_bytes(j, sim.now_s) / c if c > 0 else 0.0 for j, c in enumerate(self._capacity)]
        hl = self._last_route.servers if self._last_route is not None else ()
        title = (f"{self.scenario.name} seed {self.scenario_seed}: t={sim.now_s:.1f}s, "
                 f"{self._routed}/{self._num_requests} routed (last chain highlighted)")
        return coverage_load_rgb(inst.num_blocks, pl.starts, pl.counts, load, title, highlight=hl)


__all__ = ["MAX_SESSIONS", "ROUTING_CONFIG", "RequestRoutingEnv", "STEP_EWMA_ALPHA"]

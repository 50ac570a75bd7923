"""``distllm/SwarmPlacement-v0``: choose the blocks of each server that (re)joins or moves in a
churning swarm.

The scenario must have a ``churn:`` section (docs/model.md §12; default scenario ``clustered-churn``).
An episode is one run of :class:`~distllm_env.live.churn.ChurnSimulation` on the seed's instance and
workload (exactly those :func:`distllm_env.simulate` uses, docs/contracts.md §1):

* the initial placement is ``config["placement"]`` (default: the scenario's default placement), run
  with the placement stream :func:`distllm_env.simulate` gives it;
* every request is routed by ``config["router"]`` (default ``ws-rr``) with the routing stream
  ``simulate`` gives it; the same router routes failed segments (failover), as in ``simulate``;
* **decision epochs** are (a) the joins of servers with a non-empty placed span and (b) with
  ``churn.rebalance`` on, the balance checks where PETALS' ``should_choose_other_blocks`` tells a live
  server to move (docs/model.md §12.1; the trigger stays PETALS' rule, the agent picks where to).
  The engine stops before the event (:meth:`ChurnSimulation.next_decision`), the agent picks the
  server's first block, the engine applies it exactly as a placement policy's ``place_joining``
  returning that start would be (docs/baselines.md "Online re-placement"; at a rebalance, the
  server's current start means "stay") and runs on to the next decision.  The server's block count
  is its count in the initial placement (its memory has not changed).

**Action**: ``Discrete(max_blocks)``, the first block ``a`` of the deciding server's ``m`` blocks;
valid iff a + m ≤ L (the span fits the model; ``m`` already fits the server's memory with one
session's KV cache, as BlockPlacement's spans do).  In an episode without any decision, the single
step is a no-op (only action 0 is valid).

**Reward** of a step: over the requests whose sessions ENDED since the previous decision (the first
step also takes those ended before the first decision, the last step those ended after the last
one, so every request is counted exactly once per episode; ``info["ended_ids"]``):
−Σ_completed (completion_s − arrival_s) / output_tokens  −  ``rejection_penalty`` · #rejected.
Completion times include every failover (ban, back-off, re-prefill on the replacement servers,
docs/model.md §12) and reload; a request rejected for any reason (``failover_timeout``,
``insufficient_memory``, ``no_feasible_chain`` …) costs ``rejection_penalty`` seconds.  The episode
terminates when every request has ended.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..api import place
from ..errors import NoFeasibleChain, ScenarioError
from ..metrics import summarize
from ..registry import default_placement, resolve_routing
from ..simulator import new_simulation
from . import has_churn_section  # noqa: F401 - re-exported
from .base import COMMON_CONFIG, DistLLMEnv, _float_at_least, _policy_spec
from .render import bar, coverage_load_rgb
from .spaces import Feature, ObsLayout

SWARM_CONFIG = dict(COMMON_CONFIG) | {
    "placement": (None, _policy_spec, "initial placement: a placement name, 'module:Class' or object; None = "
                                      "distllm_env.registry.default_placement(scenario)"),
    "router": ("ws-rr", _policy_spec, "router of every request and failed segment: a routing name, "
                                      "'module:Class' or object"),
    "rejection_penalty": (10.0, _float_at_least(0.0), "seconds charged per rejected request"),
}

_GIB = float(2**30)


class SwarmPlacementEnv(DistLLMEnv):
    """Pick the span of each (re)joining or moving server under churn (see the module docstring)."""

    decision_name = "SwarmPlacement"
    default_scenario = "clustered-churn"
    CONFIG = SWARM_CONFIG

    def _check_scenario(self, scenario) -> None:
        super()._check_scenario(scenario)
        if getattr(scenario, "churn", None) is None:
            raise ScenarioError("churn", f"scenario {scenario.name!r} has no churn section; SwarmPlacement needs "
                                         f"one (docs/scenarios.md \"Churn\"), e.g. the clustered-churn preset")

    # -- spaces ------------------------------------------------------------------------------------
    def _build_spaces(self) -> None:
        from gymnasium import spaces

        S, B, T = self.config["max_servers"], self.config["max_blocks"], self.config["max_time_s"]
        self.layout = ObsLayout([
            Feature("server_mask", S, 0, 1, "1/0", "1 for a real server, 0 for padding"),
            Feature("server_up", S, 0, 1, "1/0", "1 if server j is up now (0: down, leaving, loading or padding)"),
            Feature("server_start_frac", S, 0, 1, "fraction of L", "first placed block a_j / L (0 if none)"),
            Feature("server_count_frac", S, 0, 1, "fraction of L", "placed blocks m_j / L (down servers included)"),
            Feature("server_tau_decode_s", S, 0, 10, "s", "decode time per block per token τ_j"),
            Feature("server_kv_used_frac", S, 0, 1, "fraction", "KV bytes held now / KV capacity (0 if none)"),
            Feature("block_mask", B, 0, 1, "1/0", "1 for a real block, 0 for padding"),
            Feature("block_coverage", B, 0, S, "servers", "servers up now hosting block b"),
            Feature("decision_server", S, 0, 1, "one-hot", "the server whose span is decided now (all 0 if none)"),
            Feature("decision_is_rebalance", 1, 0, 1, "1/0", "1 at a rebalance move, 0 at a join"),
            Feature("decision_count_frac", 1, 0, 1, "fraction of L", "blocks m the server hosts / L"),
            Feature("decision_tau_decode_s", 1, 0, 10, "s", "the server's decode time per block per token τ_j"),
            Feature("decision_kv_gib", 1, 0, 4096, "GiB", "the server's KV capacity"),
            Feature("time_s", 1, 0, T, "s", "simulated time now"),
            Feature("progress", 1, 0, 1, "fraction", "requests ended / requests of the episode"),
        ])
        self.observation_space = self.layout.space()
        self.action_space = spaces.Discrete(B)

    # -- episode -----------------------------------------------------------------------------------
    def _start_episode(self, seed: int) -> None:
        inst, reqs = self._episode_data(seed)
        self.instance = inst
        sc, cfg = self.scenario, self.config
        # not cached: the placement stream must be advanced exactly as simulate() advances it, since
        # the env policies draw place_joining from it afterwards
        self.placement_rng, self.routing_rng, self.env_rng = self.policy_streams(seed)
        spec, field = cfg["placement"], "config.placement"
        if spec is None:
            spec, field = default_placement(sc, allow_imports=cfg["allow_imports"]), "policy_defaults.placement"
        self.placement_result, self.placement_name, _ = place(inst, spec, self.placement_rng, sc, field=field)
        self.router = resolve_routing(cfg["router"], sc, allow_imports=cfg["allow_imports"], field="config.router")
        sim = new_simulation(inst, self.placement_result, reqs, reservation=sc.simulator.reservation,
                             backoff=sc.simulator.backoff, allocation_delay_s=self.allocation_delay_s())
        sim.set_failover_router(self.router, self.routing_rng)
        sim.external_placement = True
        self.sim = sim
        self._counted = np.zeros(len(reqs), dtype=bool)
        self._num_requests = len(reqs)
        #: (time_s, server, start, "join" | "rebalance") per decision taken
        self.decisions: list[tuple[float, int, int, str]] = []
        #: (server, count) of the decision pending now (join or rebalance), else None
        self.pending: tuple[int, int] | None = None
        self.decision_kind: str | None = None
        self._advance()
        self._noop = self.pending is None     # an episode without any decision: one no-op step

    def _advance(self) -> None:
        """Run the engine to the next decision (``self.pending = (server, count)``, ``decision_kind``
        "join" or "rebalance") or the end (``None``);
        requests meanwhile are routed exactly as :func:`distllm_env.api.run_routing` routes them."""
        sim, router, rng = self.sim, self.router, self.routing_rng
        while True:
            d = sim.next_decision()
            if d is None or isinstance(d, tuple):
                self.pending = None if d is None else (int(d[1]), int(d[2]))
                self.decision_kind = None if d is None else d[0]
                return
            try:
                route = router.route(d, sim.view, rng)
            except NoFeasibleChain:
                sim.reject(d, "no_feasible_chain")
                continue
            sim.commit(d, route)

    def _apply(self, action: int) -> tuple[float, bool, dict]:
        info: dict[str, Any] = {}
        if self.pending is not None:
            j, count = self.pending
            info.update(server=j, start=int(action), count=count, decision=self.decision_kind)
            self.decisions.append((float(self.sim.now_s), j, int(action), self.decision_kind))
            self.sim.decide(int(action))
            self._advance()
        self._noop = False
        reward, comps, ended = self._collect()
        info["ended_ids"] = ended
        info["reward_components"] = comps
        terminated = self.pending is None
        if terminated:
            info["summary"] = self.episode_summary()
        return reward, terminated, info

    def _collect(self) -> tuple[float, dict, list[int]]:
        """Reward terms of the requests that ended since the last call (module docstring)."""
        per_token, rejected, ended = 0.0, 0, []
        for i, r in enumerate(self.sim.records):
            if r is None or self._counted[i] or r.status not in ("completed", "rejected"):
                continue
            self._counted[i] = True
            ended.append(i)
            if r.status == "completed":
                per_token += (r.completion_s - r.arrival_s) / r.output_tokens
            else:
                rejected += 1
        pen = self.config["rejection_penalty"] * rejected
        return -per_token - pen, {"per_token_time": -per_token, "rejection": -pen}, ended

    def episode_summary(self) -> dict:
        """Summary metrics of the finished episode (docs/contracts.md §6), numeric keys only, plus
        ``num_decisions``."""
        s = summarize(self.sim.finished_records(), self.sim.capacity_bytes)
        keys = ("mean_per_token_time_s", "ttft_p50_s", "ttft_p95_s", "wait_mean_s", "num_completed", "num_rejected")
        return {**{k: s[k] for k in keys}, "num_decisions": len(self.decisions)}

    @property
    def records(self):
        """The simulator's per-request records so far (``None`` for requests not yet routed)."""
        return list(self.sim.records)

    # -- masks and observations --------------------------------------------------------------------
    def _current_mask(self) -> np.ndarray:
        mask = np.zeros(self.action_space.n, dtype=bool)
        if self.pending is None:
            mask[0] = True          # no-op / terminal state: a dummy valid action, so the mask is never empty
            return mask
        mask[: self.instance.num_blocks - self.pending[1] + 1] = True
        return mask

    def _live_spans(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(starts, counts, up) of the placement in force (down servers keep their placed span)."""
        p = self.sim._placed
        up = np.array([s == 0 for s in self.sim.state], dtype=bool)     # live.churn.UP == 0
        return np.asarray(p.starts), np.asarray(p.counts), up

    def _observation(self) -> dict[str, np.ndarray]:
        obs = self.layout.zeros()
        inst, sim = self.instance, self.sim
        N, L = inst.num_servers, inst.num_blocks
        starts, counts, up = self._live_spans()
        obs["server_mask"][:N] = 1
        obs["server_up"][:N] = up
        obs["server_start_frac"][:N] = np.where(counts > 0, starts, 0) / L
        obs["server_count_frac"][:N] = counts / L
        obs["server_tau_decode_s"][:N] = inst.tau_decode_s
        cap = np.asarray(sim.capacity_bytes, dtype=np.float64)
        obs["server_kv_used_frac"][:N] = np.divide(np.asarray(sim.used_bytes, dtype=np.float64), cap,
                                                   out=np.zeros(N), where=cap > 0)
        obs["block_mask"][:L] = 1
        diff = np.zeros(L + 1)
        live = up & (counts > 0)
        np.add.at(diff, starts[live], 1)
        np.add.at(diff, starts[live] + counts[live], -1)
        obs["block_coverage"][:L] = np.cumsum(diff)[:L]
        if self.pending is not None:
            j, count = self.pending
            obs["decision_server"][j] = 1
            obs["decision_is_rebalance"][0] = self.decision_kind == "rebalance"
            obs["decision_count_frac"][0] = count / L
            obs["decision_tau_decode_s"][0] = inst.tau_decode_s[j]
            obs["decision_kv_gib"][0] = cap[j] / _GIB
        obs["time_s"][0] = sim.now_s
        obs["progress"][0] = self._counted.sum() / max(self._num_requests, 1)
        return self.layout.finish(obs)

    def _reset_info(self) -> dict:
        return {"placement": self.placement_name, "num_requests": self._num_requests,
                "server": None if self.pending is None else self.pending[0]}

    # -- rendering ---------------------------------------------------------------------------------
    def _render_text(self) -> str:
        inst, sim = self.instance, self.sim
        starts, counts, up = self._live_spans()
        lines = [f"SwarmPlacement  scenario={self.scenario.name} seed={self.scenario_seed} "
                 f"placement={self.placement_name}  t={sim.now_s:.2f}s  ended {int(self._counted.sum())}/"
                 f"{self._num_requests}  decisions {len(self.decisions)}"]
        if self.pending is not None:
            j, count = self.pending
            what = "joins" if self.decision_kind == "join" else f"moves (rebalance) from block {starts[j]}"
            lines.append(f"server {j} {what} with {count} blocks: start 0..{inst.num_blocks - count}")
        else:
            lines.append("episode finished" if self._done else "no decision in this episode (no-op step)")
        for j in range(inst.num_servers):
            cap = sim.capacity_bytes[j]
            frac = sim.used_bytes[j] / cap if cap > 0 else 0.0
            span = f"{starts[j]:3d}-{starts[j] + counts[j] - 1:3d}" if counts[j] else "   none"
            state = "up  " if up[j] else "down"
            mark = ">" if self.pending is not None and j == self.pending[0] else " "
            lines.append(f"{mark} s{j:<3d} {inst.servers[j].gpu.name:<14s} {state} blocks {span}  KV {bar(frac)} "
                         f"{frac:5.1%}")
        return "\n".join(lines)

    def _render_rgb(self) -> np.ndarray:
        inst, sim = self.instance, self.sim
        starts, counts, up = self._live_spans()
        load = [sim.used_bytes[j] / c if c > 0 else 0.0 for j, c in enumerate(sim.capacity_bytes)]
        hl = () if self.pending is None else (self.pending[0],)
        title = (f"{self.scenario.name} seed {self.scenario_seed}: t={sim.now_s:.1f}s, "
                 f"{len(self.decisions)} decisions (deciding server highlighted; hatched: not up)")
        return coverage_load_rgb(inst.num_blocks, starts, counts, load, title, highlight=hl, decided=up)


__all__ = ["SWARM_CONFIG", "SwarmPlacementEnv", "has_churn_section"]

"""CG-BP with |R| tuned by simulation (``cg-bp-tuned``; issue 13 item 2; docs/baselines.md
"CG-BP tuned").

CG-BP (:mod:`.cg_bp`, arXiv 2512.21884 Algorithm 1) places blocks for a target number |R| of
concurrent sessions, chosen by the rule of docs/contracts.md §4 (λT₁ + √(λT₁), docs/model.md §6.4).
Under load that rule can be far from the best |R|.  This placement instead simulates the scenario for
each candidate |R| on TRAINING seeds (< 10,000, never the evaluation seed: docs/contracts.md §1) with
CG-BP(|R|) and the scenario's router, and keeps the |R| with the lowest mean per-token time
(``mean_per_token_time_s``, docs/contracts.md §6) averaged over those seeds; ties go to the smaller
|R|.  The evaluation instance then gets CG-BP for that |R| (lowered until CG-BP is feasible on it).

Default candidates: the geometric grid 1, 2, 4, … up to twice the rule's |R| (computed on the first
training seed's instance), the rule's |R| itself included, capped at R_max.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from distllm_env.errors import PlacementError
from distllm_env.instance import Instance, build_instance
from distllm_env.offline import OfflineProblem
from distllm_env.placement import CachePolicy, PlacementResult
from distllm_env.policy_options import check_int, option_error
from distllm_env.registry import ROUTING_POLICIES

from .cg_bp import CGBPPlacement, cg_bp, choose_sessions, corollary1_feasible, r_max

#: training seeds must stay below the held-out evaluation seeds (docs/contracts.md §1)
FIRST_EVAL_SEED = 10_000
MAX_CANDIDATES = 64


def default_candidates(instance: Instance) -> tuple[int, ...]:
    """1, 2, 4, … ≤ 2·R₀ plus R₀ (R₀: CG-BP's |R| rule on ``instance``), each ≤ R_max, ascending."""
    r0 = choose_sessions(instance)
    top = max(min(2 * r0, r_max(instance)), 1)
    grid = {1 << k for k in range(int(math.log2(top)) + 1)}
    grid.add(min(r0, top))
    return tuple(sorted(grid))


class CGBPTunedPlacement(CGBPPlacement):
    """CG-BP with |R| chosen by simulation on training seeds (``cg-bp-tuned``, family ``proposed``;
    module docstring).  Online re-placement of joining servers (churn) is CG-BP's.

    Options: ``candidates`` (``"auto"`` or a list of positive integers: the |R| values tried),
    ``train_seeds`` (a count n → seeds 0..n−1, default 3, or a list of seeds, each < 10,000),
    ``routing`` (registered router simulated with, default ``ws-rr``).  Bad values raise
    :class:`ScenarioError` at ``policy_defaults.options.cg-bp-tuned.<option>``.

    Diagnostics: ``sessions`` (the chosen |R| on the evaluation instance), ``tuned_sessions`` (the
    argmin), ``tuning_candidates``, ``tuning_mean_per_token_time_s`` (per candidate, ``inf`` when
    CG-BP was infeasible on a training instance), ``train_seeds``, ``tuning_routing``."""

    name = "cg-bp-tuned"
    family = "proposed"

    def __init__(self, candidates: str | Sequence[int] = "auto", train_seeds: int | Sequence[int] = 3,
                 routing: str = "ws-rr"):
        super().__init__()
        if isinstance(candidates, str):
            if candidates != "auto":
                raise option_error(self.name, "candidates", "'auto' or a list of positive integers", candidates)
            self.candidates: tuple[int, ...] | None = None
        else:
            if not isinstance(candidates, (list, tuple)) or not 1 <= len(candidates) <= MAX_CANDIDATES:
                raise option_error(self.name, "candidates", f"'auto' or a list of 1..{MAX_CANDIDATES} positive "
                                                            "integers", candidates)
            self.candidates = tuple(sorted({check_int(self.name, "candidates", c, 1) for c in candidates}))
        if isinstance(train_seeds, (list, tuple)):
            if not train_seeds:
                raise option_error(self.name, "train_seeds", "a non-empty list of seeds", train_seeds)
            seeds = [check_int(self.name, "train_seeds", s, 0, FIRST_EVAL_SEED - 1) for s in train_seeds]
        else:
            seeds = list(range(check_int(self.name, "train_seeds", train_seeds, 1, FIRST_EVAL_SEED)))
        self.train_seeds = tuple(seeds)
        if not isinstance(routing, str) or routing not in ROUTING_POLICIES:
            raise option_error(self.name, "routing", f"one of {sorted(ROUTING_POLICIES)}", routing)
        self.routing = routing
        self._cache: dict[Any, tuple[int, dict]] = {}

    def tune(self, scenario) -> tuple[int, dict[str, Any]]:
        """``(best |R|, diagnostics)`` for ``scenario`` (a loaded :class:`Scenario`): the argmin over
        the candidates of the mean per-token time over the training seeds (memoised per scenario)."""
        from distllm_env.api import simulate

        key = scenario.hash
        if key in self._cache:
            return self._cache[key]
        cands = self.candidates or default_candidates(build_instance(scenario, self.train_seeds[0]))
        means = []
        for R in cands:
            vals = []
            for seed in self.train_seeds:
                try:
                    res = simulate(scenario, CGBPPlacement(sessions=R), self.routing, seed=seed)
                except PlacementError:
                    vals.append(math.inf)
                    continue
                vals.append(float(res.summary["mean_per_token_time_s"]))
            means.append(float(np.mean(vals)))
        best = cands[int(np.argmin(means))]
        diag = {"tuned_sessions": int(best), "tuning_candidates": [int(c) for c in cands],
                "tuning_mean_per_token_time_s": means, "train_seeds": list(self.train_seeds),
                "tuning_routing": self.routing}
        self._cache[key] = (int(best), diag)
        return self._cache[key]

    def place(self, instance: Instance, rng: np.random.Generator) -> PlacementResult:
        best, tuning = self.tune(instance.scenario)
        R = best
        while R > 1 and not corollary1_feasible(instance, R):
            R -= 1
        sol = cg_bp(OfflineProblem.from_instance(instance, 1), R)
        diag = dict(tuning, sessions=sol.sessions, sessions_rule="tuned", K=sol.K,
                    theorem2_bound_per_token_s=sol.bound_per_token_s, order=list(sol.order))
        return PlacementResult(sol.placement, CachePolicy(), diag)


__all__ = ["CGBPTunedPlacement", "default_candidates"]

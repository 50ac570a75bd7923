"""``cg-bp-tuned`` (baselines/cg_bp_tuned.py; docs/baselines.md "CG-BP tuned"): |R| is exactly the argmin
of a brute-force sweep over training seeds, never depends on the evaluation seed, and is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from distllm_env.api import simulate
from distllm_env.baselines.cg_bp import CGBPPlacement, cg_bp
from distllm_env.baselines.cg_bp_tuned import CGBPTunedPlacement, default_candidates
from distllm_env.errors import ScenarioError
from distllm_env.instance import build_instance
from distllm_env.offline import OfflineProblem
from distllm_env.registry import make_placement
from distllm_env.scenario import load_scenario

SCENARIO = "paper-clustered"
OVERRIDES = ["workload.num_requests=40", "workload.arrival_rate_per_s=2"]
CANDIDATES = [1, 2, 4, 8, 16]
TRAIN = [0, 1]


@pytest.fixture(scope="module")
def tuned():
    return simulate(SCENARIO, CGBPTunedPlacement(candidates=CANDIDATES, train_seeds=TRAIN), "ws-rr", seed=10000,
                    overrides=OVERRIDES)


def test_picks_exactly_the_argmin_of_a_brute_force_sweep(tuned):
    means = [float(np.mean([simulate(SCENARIO, CGBPPlacement(sessions=R), "ws-rr", seed=s, overrides=OVERRIDES)
                            .summary["mean_per_token_time_s"] for s in TRAIN])) for R in CANDIDATES]
    diag = tuned.placement_result.diagnostics
    assert diag["tuning_mean_per_token_time_s"] == means
    assert diag["tuned_sessions"] == CANDIDATES[int(np.argmin(means))]
    assert len(set(means)) > 1                      # the sweep really discriminates
    # the evaluation instance gets CG-BP for that |R|
    inst = build_instance(load_scenario(SCENARIO, OVERRIDES), 10000)
    assert tuned.placement_result.placement == cg_bp(OfflineProblem.from_instance(inst, 1),
                                                     diag["sessions"]).placement
    assert tuned.family == "proposed" and tuned.summary["allocation_delay_s"] == 60.0


def test_deterministic_and_independent_of_the_evaluation_seed(tuned):
    again = simulate(SCENARIO, CGBPTunedPlacement(candidates=CANDIDATES, train_seeds=TRAIN), "ws-rr", seed=10000,
                     overrides=OVERRIDES)
    assert again.placement_result.diagnostics == tuned.placement_result.diagnostics
    assert again.records == tuned.records
    other = simulate(SCENARIO, CGBPTunedPlacement(candidates=CANDIDATES, train_seeds=TRAIN), "ws-rr", seed=10003,
                     overrides=OVERRIDES)
    keys = ("tuned_sessions", "tuning_mean_per_token_time_s", "train_seeds")
    assert {k: other.placement_result.diagnostics[k] for k in keys} == {
        k: tuned.placement_result.diagnostics[k] for k in keys}


def test_default_candidates_are_a_geometric_grid_through_the_rule():
    inst = build_instance(load_scenario(SCENARIO, OVERRIDES), 0)
    grid = default_candidates(inst)
    r0 = CGBPPlacement().solve(inst)[1]["sessions"]
    assert r0 in grid and grid == tuple(sorted(grid)) and grid[0] == 1
    assert all(b == 2 * a for a, b in zip(grid, grid[1:]) if b != r0 and a != r0)


@pytest.mark.parametrize("option,value", [("train_seeds", [10000]), ("train_seeds", 0), ("candidates", [0]),
                                          ("candidates", "many"), ("routing", "nope")])
def test_bad_options_name_the_field(option, value):
    with pytest.raises(ScenarioError, match=f"policy_defaults.options.cg-bp-tuned.{option}"):
        make_placement("cg-bp-tuned", options={option: value})

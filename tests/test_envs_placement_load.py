"""BlockPlacement load features, per-episode λ and the ``action: "sessions"`` mode (docs/envs.md)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import distllm_env  # noqa: F401
from distllm_env import simulate
from distllm_env.baselines.cg_bp import CGBPPlacement, corollary1_feasible, sessions_rule
from distllm_env.envs import PLACEMENT_SESSIONS_DEFAULTS, env_id
from distllm_env.envs.placement import BlockPlacementEnv
from distllm_env.envs.placement_load import (DEFAULT_SESSIONS_GRID, UTILISATION_MAX, block_utilisation,
                                             draw_arrival_rate)
from distllm_env.errors import ScenarioError
from distllm_env.scenario import load_scenario

FAST = ["workload.num_requests=12"]


def test_sessions_step_equals_simulating_cg_bp_with_that_sessions():
    env = BlockPlacementEnv("tiny", {"action": "sessions", "router": "ws-rr"}, overrides=FAST)
    _, info = env.reset(seed=5)
    grid = env.config["sessions_grid"]
    assert env.action_space.n == len(grid) == len(DEFAULT_SESSIONS_GRID)
    for a in (0, 3, int(np.flatnonzero(env.action_masks())[-1])):
        env.reset(seed=5)
        _, reward, terminated, truncated, info = env.step(a)
        assert terminated and not truncated and info["sessions"] == grid[a]
        res = simulate("tiny", CGBPPlacement(sessions=grid[a]), "ws-rr", seed=5, overrides=FAST, allocation_delays={})
        assert env.result.placement == res.placement_result.placement
        assert reward == pytest.approx(-res.summary["mean_per_token_time_s"], rel=1e-12)
        assert res.summary["num_rejected"] == 0
        assert env.action_masks().tolist() == [True] + [False] * (len(grid) - 1)     # terminal: dummy action 0


def test_sessions_mask_is_corollary_1_and_an_infeasible_grid_is_refused():
    env = BlockPlacementEnv("tiny", {"action": "sessions"}, overrides=FAST)
    env.reset(seed=1)
    inst = env.instance
    expected = [corollary1_feasible(inst, R) for R in env.config["sessions_grid"]]
    assert env.action_masks().tolist() == expected
    assert expected[0] and not expected[-1]        # 1 session fits tiny, 1024 do not
    with pytest.raises(ScenarioError) as err:
        BlockPlacementEnv("tiny", {"action": "sessions", "sessions_grid": [4096, 8192]}, overrides=FAST).reset(seed=1)
    assert err.value.path == "config.sessions_grid"
    # a masked action is replaced by the lowest valid one (|R| = 1) and flagged
    env.reset(seed=1)
    _, _, _, _, info = env.step(len(expected) - 1)
    assert info["invalid_action"] and info["sessions"] == env.config["sessions_grid"][0]


def test_load_features_match_the_sessions_rule():
    env = BlockPlacementEnv("tiny", {"action": "sessions"}, overrides=FAST)
    obs, info = env.reset(seed=2)
    inst = env.instance
    rule = sessions_rule(inst, 2.0)                   # tiny: λ = 2 /s
    assert obs["arrival_rate_per_s"][0] == np.float32(2.0) == info["arrival_rate_per_s"]
    assert obs["lone_request_time_s"][0] == np.float32(rule.t1_s)
    assert obs["offered_sessions"][0] == np.float32(2.0 * rule.t1_s)
    assert obs["rule_sessions"][0] == rule.sessions == info["rule_sessions"]
    # the default cg-bp uses exactly this |R|
    assert CGBPPlacement().place(inst, np.random.default_rng(0)).diagnostics["sessions"] == rule.sessions
    grid = np.asarray(env.config["sessions_grid"], dtype=np.float32)
    assert np.array_equal(obs["sessions_grid_rel"], grid / np.float32(rule.sessions))
    prompts = [r.prompt_tokens for r in env.requests]
    outputs = [r.output_tokens for r in env.requests]
    assert obs["mean_prompt_tokens"][0] == np.float32(np.mean(prompts))
    assert obs["mean_output_tokens"][0] == np.float32(np.mean(outputs))


def test_block_utilisation_is_offered_sessions_over_planned_capacity():
    env = BlockPlacementEnv("tiny", {"server_order": "given"}, overrides=FAST)
    obs, _ = env.reset(seed=0)
    L = env.instance.num_blocks
    assert np.all(obs["block_utilisation"][:L] == UTILISATION_MAX) and np.all(obs["block_utilisation"][L:] == 0)
    obs, *_ = env.step(env.unwrapped.encode_action(2, 3))
    inst = env.instance
    kappa0 = (int(inst.memory_bytes[0]) - 3 * int(inst.block_bytes)) // (3 * int(inst.kv_block_bytes))
    assert kappa0 >= 1
    offered = env.load.offered_sessions
    expect = np.full(L, UTILISATION_MAX)
    expect[2:5] = min(offered / kappa0, UTILISATION_MAX)
    assert np.allclose(obs["block_utilisation"][:L], expect.astype(np.float32))
    # hand example of the function: two servers overlapping on block 1
    u = block_utilisation(6.0, np.array([0, 1]), np.array([2, 1]), np.array([True, True]),
                          np.array([100, 100]), 10, 5, 3)
    # κ_0 = (100 − 20) // 10 = 8, κ_1 = (100 − 10) // 5 = 18 → C = [8, 26, 0]
    assert u.tolist() == [6.0 / 8, 6.0 / 26, UTILISATION_MAX]


def test_arrival_rate_range_is_drawn_per_episode_from_the_scenario_seed():
    cfg = {"arrival_rate_per_s": [0.5, 8.0], "router": "ws-rr"}
    env = BlockPlacementEnv("tiny", cfg, overrides=FAST)
    rates = {}
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        lam = info["arrival_rate_per_s"]
        assert 0.5 <= lam <= 8.0 and obs["arrival_rate_per_s"][0] == np.float32(lam)
        assert env.instance.scenario.workload.arrival_rate_per_s == lam
        rates[seed] = lam
    assert len(set(rates.values())) == 6
    env2 = BlockPlacementEnv("tiny", cfg, overrides=FAST)
    assert [env2.reset(seed=s)[1]["arrival_rate_per_s"] for s in range(6)] == list(rates.values())
    # the episode is the scenario with that λ: the final reward equals simulate() on the overridden scenario
    from distllm_env.envs.policies import PlacementEnvPolicy, run_episode

    out = run_episode(env, PlacementEnvPolicy("cg-bp", env), seed=3)
    res = simulate("tiny", "cg-bp", "ws-rr", seed=3, allocation_delays={},
                   overrides=FAST + [f"workload.arrival_rate_per_s={rates[3]!r}"])
    assert env.result.placement == res.placement_result.placement
    assert out["rewards"][-1] == pytest.approx(-res.summary["mean_per_token_time_s"], rel=1e-12)


def test_arrival_rate_draws_are_log_uniform_or_uniform():
    lo, hi = 0.5, 8.0
    logs = np.log([draw_arrival_rate((lo, hi), "log-uniform", s) for s in range(2000)])
    assert logs.min() >= math.log(lo) and logs.max() <= math.log(hi)
    assert abs(logs.mean() - (math.log(lo) + math.log(hi)) / 2) < 0.1        # sd of the mean ≈ 0.018
    lin = np.array([draw_arrival_rate((lo, hi), "uniform", s) for s in range(2000)])
    assert abs(lin.mean() - (lo + hi) / 2) < 0.3                                   # sd of the mean ≈ 0.05
    assert draw_arrival_rate(3.0, "uniform", 7) == 3.0 and draw_arrival_rate(None, "uniform", 7) is None
    assert draw_arrival_rate((2.0, 2.0), "log-uniform", 7) == 2.0


@pytest.mark.parametrize("config, path", [
    ({"arrival_rate_per_s": 0}, "config.arrival_rate_per_s"),
    ({"arrival_rate_per_s": [4, 1]}, "config.arrival_rate_per_s"),
    ({"arrival_rate_per_s": "fast"}, "config.arrival_rate_per_s"),
    ({"arrival_rate_per_s": 1e9}, "workload.arrival_rate_per_s"),       # the scenario's own check
    ({"arrival_rate_draw": "normal"}, "config.arrival_rate_draw"),
    ({"action": "spans"}, "config.action"),
    ({"sessions_grid": [4, 2]}, "config.sessions_grid"),
    ({"sessions_grid": []}, "config.sessions_grid"),
    ({"sessions_grid": [0, 1]}, "config.sessions_grid"),
])
def test_bad_load_config_names_the_field(config, path):
    with pytest.raises(ScenarioError) as err:
        BlockPlacementEnv("tiny", config)
    assert err.value.path == path


def test_a_rate_on_a_trace_workload_is_refused():
    with pytest.raises(ScenarioError) as err:
        BlockPlacementEnv("azure-conv-swarm", {"arrival_rate_per_s": 2.0})
    assert err.value.path == "config.arrival_rate_per_s" and "trace" in str(err.value)


def test_sessions_preset_ids_keep_their_defaults_under_a_user_config():
    for preset in ("paper-bellcanada", "paper-gtsce"):
        env = gym.make(env_id("BlockPlacementSessions", preset), config={"router": "ws-rr"}, disable_env_checker=True)
        u = env.unwrapped
        assert u.scenario.name == preset and u.config["router"] == "ws-rr"
        assert u.config["action"] == "sessions"
        assert list(u.config["arrival_rate_per_s"]) == PLACEMENT_SESSIONS_DEFAULTS["arrival_rate_per_s"]
        env2 = gym.make(env_id("BlockPlacementSessions", preset), config={"arrival_rate_per_s": 4.0},
                        disable_env_checker=True)
        _, info = env2.reset(seed=10000)
        assert info["arrival_rate_per_s"] == 4.0 and info["rule_sessions"] > 0


def test_sessions_episode_replays_from_its_record():
    from distllm_env.replay import replay

    env = gym.make(env_id("BlockPlacementSessions"), overrides=FAST, disable_env_checker=True)
    env.reset(seed=4)
    _, reward, *_ = env.step(5)
    rec = env.unwrapped.episode_record()
    assert rec.config["action"] == "sessions" and rec.actions == (5,)
    out = replay(rec)
    assert out.rewards[-1] == pytest.approx(reward, rel=1e-12)


def test_scenario_loads_once_per_rate():
    sc = load_scenario("tiny")
    env = BlockPlacementEnv(sc, {"arrival_rate_per_s": 3.0}, overrides=FAST)
    env.reset(seed=0)
    first = env.episode_scenario
    env.reset(seed=1)
    assert env.episode_scenario is first and first.workload.arrival_rate_per_s == 3.0


def test_learned_placement_plays_a_sessions_model_at_the_callers_rate(tmp_path):
    pytest.importorskip("sb3_contrib")
    from distllm_env.agents import LearnedModel, LearnedPlacement
    from distllm_env.agents.train import train

    res = train(env_id("BlockPlacementSessions"), "tiny", "maskable_ppo", 32, tmp_path / "sessions.zip", seed=1,
                hyperparams={"n_steps": 16, "batch_size": 16, "n_epochs": 1}, progress_bar=False)
    model = LearnedModel(res.model_path)
    assert model.sidecar["env_config"]["action"] == "sessions"
    pol = LearnedPlacement(model)
    sim = simulate("tiny", pol, "ws-rr", seed=10_000, allocation_delays={})
    R = sim.placement_result.diagnostics["sessions"]
    assert R in DEFAULT_SESSIONS_GRID
    # the same placement as cg-bp with that |R| on the caller's scenario (λ = 2, not a draw from [0.5, 8])
    ref = simulate("tiny", CGBPPlacement(sessions=R), "ws-rr", seed=10_000, allocation_delays={})
    assert sim.placement_result.placement == ref.placement_result.placement
    assert sim.summary["mean_per_token_time_s"] == ref.summary["mean_per_token_time_s"]
    env = model.make_env("tiny", (), arrival_rate_per_s=None)
    obs, info = env.reset(seed=10_000)
    assert info["arrival_rate_per_s"] == 2.0

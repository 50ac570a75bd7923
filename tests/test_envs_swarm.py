"""``distllm/SwarmPlacement-v0`` (distllm_env/envs/swarm.py): baselines through the env reproduce
``simulate`` record by record, masks, reward accounting, config errors.  The generic API checks
(check_env, SB3, determinism, pickle, vector envs, render) run over every id in tests/test_envs.py."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import distllm_env
from distllm_env.envs import env_id, has_churn_section, registered_ids
from distllm_env.envs.policies import JoinEnvPolicy, MaskedRandomPolicy, run_episode
from distllm_env.errors import DistLLMError, ScenarioError
from distllm_env.scenario import list_presets, load_scenario
from distllm_env.scenario.loading import preset_path


def make(scenario="clustered-churn", **config):
    return gym.make("distllm/SwarmPlacement-v0", disable_env_checker=True, scenario=scenario, config=config or None)


def test_a_preset_id_for_exactly_the_churn_presets():
    churn = [p for p in list_presets() if load_scenario(p).churn is not None]
    assert churn and all(has_churn_section(preset_path(p).read_text()) for p in churn)
    ids = {i for i in registered_ids() if i.startswith("distllm/SwarmPlacement-")}
    assert ids == {env_id("SwarmPlacement")} | {env_id("SwarmPlacement", p) for p in churn}


REBALANCE = ["churn.rebalance.balance_quality=0.75"]


@pytest.mark.parametrize("preset,placement,router,overrides", [
    ("clustered-churn", "petals", "petals", []),           # PETALS' rule without rebalancing
    ("clustered-churn", "petals", "petals", REBALANCE),    # ... with PETALS rebalancing
    ("clustered-churn", "cg-bp", "ws-rr", []),             # CG-BP's rule
    ("clustered-churn", "cg-bp", "ws-rr", REBALANCE),
    ("petals-swarm-churn", "petals", "petals", []),
])
@pytest.mark.parametrize("seed", [0, 3])
def test_baseline_through_the_env_equals_simulate(preset, placement, router, overrides, seed):
    env = gym.make("distllm/SwarmPlacement-v0", disable_env_checker=True, scenario=preset, overrides=overrides,
                   config={"placement": placement, "router": router})
    out = run_episode(env, JoinEnvPolicy(placement, env), seed=seed)
    ref = distllm_env.simulate(preset, placement, router, seed=seed, overrides=overrides, allocation_delays={})
    u = env.unwrapped
    assert u.sim.finished_records() == ref.records                 # record by record
    assert list(u.sim.server_log) == list(ref.server_events)
    assert out["steps"] == max(len(u.decisions), 1)
    decided = {(t, j, s) for t, j, s, _ in u.decisions}
    assert all(m in decided for m in u.sim.block_moves)              # every move was a decision
    kinds = {k for *_, k in u.decisions}
    if overrides and placement == "petals" and seed == 0:
        assert "rebalance" in kinds and u.sim.dynamics.num_rebalance_moves > 0
    if not overrides:
        assert kinds <= {"join"}


@pytest.mark.parametrize("overrides", [[], REBALANCE])
def test_every_request_counted_exactly_once_in_the_rewards(overrides):
    env = gym.make("distllm/SwarmPlacement-v0", disable_env_checker=True, overrides=overrides,
                   config={"rejection_penalty": 7.0})
    for seed in (0, 1, 2):
        obs, info = env.reset(seed=seed)
        seen, total = [], 0.0
        while True:
            obs, r, term, trunc, info = env.step(int(np.flatnonzero(env.unwrapped.action_masks())[0]))
            seen += info["ended_ids"]
            total += r
            if term:
                break
        recs = env.unwrapped.sim.finished_records()
        assert sorted(seen) == list(range(len(recs)))
        expect = sum(-(x.completion_s - x.arrival_s) / x.output_tokens if x.completed else -7.0 for x in recs)
        assert math.isclose(total, expect, rel_tol=1e-12)
        assert info["summary"]["num_completed"] + info["summary"]["num_rejected"] == len(recs)


@pytest.mark.parametrize("overrides", [[], REBALANCE])
def test_masks_allow_exactly_the_spans_that_fit_and_the_choice_is_applied(overrides):
    env = gym.make("distllm/SwarmPlacement-v0", disable_env_checker=True, overrides=overrides)
    rng = np.random.default_rng(5)
    policy = MaskedRandomPolicy(rng)
    for seed in (0, 1):
        obs, info = env.reset(seed=seed)
        u = env.unwrapped
        L = u.instance.num_blocks
        while True:
            mask = u.action_masks()
            if u.pending is not None:
                j, count = u.pending
                assert count > 0 and count == u.placement_result.placement.counts[j]
                assert np.flatnonzero(mask).tolist() == list(range(L - count + 1))
                assert obs["decision_server"][j] == 1
                # a joining server is not up yet; a server told to move by the balance check is
                assert obs["server_up"][j] == (u.decision_kind == "rebalance")
            else:
                assert np.flatnonzero(mask).tolist() == [0]
            a = policy.act(obs, info) if mask.sum() > 1 else 0
            before = u.pending
            obs, r, term, trunc, info = env.step(a)
            assert info["invalid_action"] is False
            if before is not None:
                assert u.sim._placed.starts[before[0]] == a and u.sim._placed.counts[before[0]] == before[1]
            if term:
                break
        # placed spans always inside the model
        p = u.sim._placed
        assert all(0 <= s and s + c <= L for s, c in zip(p.starts, p.counts))


def test_observation_coverage_counts_the_live_servers():
    env = make()
    obs, info = env.reset(seed=0)
    u = env.unwrapped
    p, L = u.sim._placed, u.instance.num_blocks
    cov = np.zeros(L)
    for j, (s, c) in enumerate(zip(p.starts, p.counts)):
        if u.sim.state[j] == 0:
            cov[s:s + c] += 1
    assert np.array_equal(obs["block_coverage"][:L], cov)
    assert obs["time_s"][0] == np.float32(min(u.sim.now_s, u.config["max_time_s"]))


def test_an_episode_without_joins_is_one_no_op_step():
    # stable servers only: nobody ever leaves, so nobody joins
    env = gym.make("distllm/SwarmPlacement-v0", disable_env_checker=True, scenario="clustered-churn",
                   overrides=["churn.stable_servers=[0,1,2,3,4,5,6,7,8]", "workload.num_requests=10"])
    obs, info = env.reset(seed=0)
    assert env.unwrapped.pending is None and env.unwrapped.action_masks().tolist()[:2] == [True, False]
    obs, r, term, trunc, info = env.step(0)
    assert term and sorted(info["ended_ids"]) == list(range(10)) and r < 0


def test_bad_scenario_and_config_are_named():
    with pytest.raises(ScenarioError, match="churn"):
        make("paper-clustered")
    with pytest.raises(ScenarioError, match="config.rejection_penalty"):
        make(rejection_penalty=-1)
    with pytest.raises(DistLLMError):
        make(router="no-such-router").reset(seed=0)


def test_engine_hook_refuses_out_of_order_calls():
    env = make()
    env.reset(seed=0)
    sim = env.unwrapped.sim
    assert sim.pending_join is not None
    with pytest.raises(DistLLMError, match="decide"):
        sim.next_decision()
    sim.decide(0)
    with pytest.raises(DistLLMError, match="no join"):
        sim.decide(0)


@pytest.mark.parametrize("overrides", [[], REBALANCE])
def test_recorded_episode_replays_exactly(overrides, tmp_path):
    from distllm_env.replay import record_episode, replay

    env = gym.make("distllm/SwarmPlacement-ClusteredChurn-v0", overrides=overrides + ["workload.num_requests=30"])
    rec = record_episode(env, MaskedRandomPolicy(5), seed=17)
    assert rec.terminated and len(rec.actions) == len(rec.rewards) > 0
    result = replay(rec.save(tmp_path / "ep.json"))
    assert result.valid, result.mismatches
    assert result.rewards == list(rec.rewards)


def test_docs_list_every_observation_key_and_config_key():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "envs.md").read_text()
    env = make()
    for key in list(env.observation_space.spaces) + list(env.unwrapped.default_config()):
        assert f"`{key}`" in text, key

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


@pytest.mark.parametrize("preset,placement,router", [("clustered-churn", "petals", "petals"),
                                                     ("clustered-churn", "cg-bp", "ws-rr"),
                                                     ("petals-swarm-churn", "petals", "petals")])
@pytest.mark.parametrize("seed", [0, 3])
def test_baseline_through_the_env_equals_simulate(preset, placement, router, seed):
    env = make(preset, placement=placement, router=router)
    out = run_episode(env, JoinEnvPolicy(placement, env), seed=seed)
    ref = distllm_env.simulate(preset, placement, router, seed=seed, allocation_delays={})
    sim = env.unwrapped.sim
    assert sim.finished_records() == ref.records
    moves = [(t, j, s) for t, j, s in sim.block_moves]
    assert [e for e in ref.server_events] == list(sim.server_log)
    assert out["steps"] == max(len(env.unwrapped.decisions), 1)
    assert all((t, j, s) in env.unwrapped.decisions for t, j, s in moves)


def test_every_request_counted_exactly_once_in_the_rewards():
    env = make(rejection_penalty=7.0)
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


def test_masks_allow_exactly_the_spans_that_fit_and_the_choice_is_applied():
    env = make()
    rng = np.random.default_rng(5)
    policy = MaskedRandomPolicy(rng)
    for seed in (0, 1):
        obs, info = env.reset(seed=seed)
        u = env.unwrapped
        L = u.instance.num_blocks
        while True:
            mask = u.action_masks()
            if u.joining is not None:
                j, count = u.joining
                assert count > 0 and count == u.placement_result.placement.counts[j]
                assert np.flatnonzero(mask).tolist() == list(range(L - count + 1))
                assert obs["joining_server"][j] == 1 and obs["server_up"][j] == 0
            else:
                assert np.flatnonzero(mask).tolist() == [0]
            a = policy.act(obs, info) if mask.sum() > 1 else 0
            before = u.joining
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
    env = make(overrides=None) if False else gym.make(
        "distllm/SwarmPlacement-v0", disable_env_checker=True, scenario="clustered-churn",
        overrides=["churn.stable_servers=[0,1,2,3,4,5,6,7,8]", "workload.num_requests=10"])
    obs, info = env.reset(seed=0)
    assert env.unwrapped.joining is None and env.unwrapped.action_masks().tolist()[:2] == [True, False]
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

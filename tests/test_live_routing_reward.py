"""RequestRouting under the live engine: the reward is DELAYED (distllm_env/envs/routing.py docstring,
docs/envs.md): a step's reward is −Σ per-token time of the requests whose sessions ended since the
previous step, minus this step's rejection penalty, so every request is counted exactly once."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import distllm_env  # noqa: F401
from distllm_env.envs.policies import MaskedRandomPolicy
from distllm_env.live.engine import LiveSimulation

CASES = [
    # contended serial servers, known lengths; sessions overlap, so commit-time predictions are wrong
    ["simulator.server_model=serial", "workload.arrival_rate_per_s=3", "workload.num_requests=40"],
    # batched servers with unknown output lengths (declared 64, true 32)
    ["simulator.server_model=batched", "workload.arrival_rate_per_s=3", "workload.num_requests=40",
     "workload.output_tokens_known=false", "workload.max_length=64"],
]


@pytest.mark.parametrize("overrides", CASES)
def test_live_reward_is_delayed_and_counts_every_completed_request_once(overrides):
    env = gym.make("distllm/RequestRouting-v0", scenario="tiny", overrides=overrides,
                   config={"rejection_penalty": 7.5}, disable_env_checker=True)
    u = env.unwrapped
    policy = MaskedRandomPolicy(0)
    obs, info = env.reset(seed=3)
    assert isinstance(u.sim, LiveSimulation)
    rewards, seen, predicted, rejected_at_commit = [], [], [], 0
    while True:
        obs, r, term, trunc, info = env.step(policy.act(obs, info))
        rewards.append(r)
        step_sum = 0.0
        for i in info["completed_ids"]:     # ended by now, with realised (not predicted) times
            rec = u.sim.records[i]
            assert rec.status == "completed" and rec.completion_s <= u.sim.now_s
            step_sum += (rec.completion_s - rec.arrival_s) / rec.output_tokens
        seen += info["completed_ids"]
        pen = 7.5 if info["rejected"] else 0.0
        rejected_at_commit += info["rejected"]
        if not info["rejected"]:
            predicted.append(info["per_token_time_s"])
        assert info["reward_components"]["per_token_time"] == pytest.approx(-step_sum, rel=1e-12, abs=0)
        assert r == pytest.approx(-step_sum - pen, rel=1e-12, abs=1e-15)
        if term or trunc:
            break
    records = u.sim.finished_records()
    completed = [rec for rec in records if rec.completed]
    assert sorted(seen) == sorted(rec.request_id for rec in completed)          # each exactly once
    assert len(seen) == len(set(seen)) and completed
    realised = sum((rec.completion_s - rec.arrival_s) / rec.output_tokens for rec in completed)
    assert math.fsum(rewards) == pytest.approx(-realised - 7.5 * rejected_at_commit, rel=1e-12)
    # the routed request's commit-time prediction is not what the reward pays out under contention
    assert not math.isclose(sum(predicted), realised, rel_tol=1e-6)
    # delayed: the payouts are spread over the episode, and the first steps pay nothing (no session
    # has ended yet) although their requests were committed
    assert rewards[0] == 0.0 and sum(r != 0.0 for r in rewards) > 5 and np.isfinite(rewards).all()


def test_analytic_engine_reward_is_still_immediate():
    env = gym.make("distllm/RequestRouting-v0", scenario="tiny", overrides=["workload.num_requests=10"],
                   disable_env_checker=True)
    u = env.unwrapped
    obs, info = env.reset(seed=0)
    assert not isinstance(u.sim, LiveSimulation)
    obs, r, *_, info = env.step(0)
    rec = u.sim.records[info["request_id"]]
    assert r == -(rec.completion_s - rec.arrival_s) / rec.output_tokens and "completed_ids" not in info

"""Episode records and ``replay``; the runnable examples of docs/envs.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import distllm_env
from distllm_env.envs.policies import MaskedRandomPolicy, PlacementEnvPolicy, RandomPolicy
from distllm_env.replay import EpisodeRecord, record_episode, replay

DOCS = Path(__file__).resolve().parent.parent / "docs" / "envs.md"

CASES = [
    ("distllm/RequestRouting-Tiny-v0", {"overrides": ["workload.num_requests=12"]}),
    ("distllm/BlockPlacement-PaperClustered-v0", {"overrides": ["workload.num_requests=12"]}),
    ("distllm/ClientSplit-v0", {"config": {"num_requests": 4}}),
    ("distllm/ClientSplit-v0", {"config": {"num_requests": 4, "mode": "per_request"}}),
]


@pytest.mark.parametrize("env_id,kwargs", CASES)
def test_recorded_episode_replays_exactly_through_json(env_id, kwargs, tmp_path):
    env = gym.make(env_id, **kwargs)
    rec = record_episode(env, MaskedRandomPolicy(5), seed=17)
    assert rec.seed == 17 and rec.terminated and len(rec.actions) == len(rec.rewards) > 0
    path = rec.save(tmp_path / "ep.json")
    loaded = EpisodeRecord.load(path)
    assert loaded == rec
    result = replay(path)
    assert result.valid, result.mismatches
    assert result.rewards == list(rec.rewards) and result.terminated and result.invalid_actions == 0


def test_episode_record_of_a_drawn_seed_replays():
    env = gym.make("distllm/RequestRouting-Tiny-v0", overrides=["workload.num_requests=6"])
    env.reset(seed=1)
    rec = record_episode(env, MaskedRandomPolicy(0), seed=None)     # scenario seed drawn from np_random
    assert rec.seed != 1
    assert replay(rec.to_dict()).valid


def test_invalid_actions_replay_through_the_invalid_action_rule():
    env = gym.make("distllm/BlockPlacement-Tiny-v0", overrides=["workload.num_requests=6"],
                   config={"invalid_action_penalty": 1.0})
    rec = record_episode(env, RandomPolicy(env, 3), seed=0)
    res = replay(rec)
    assert res.valid and res.invalid_actions > 0
    strict = replay(rec, require_valid=True)
    assert not strict.valid and "invalid action" in strict.mismatches[0]


def test_tampered_records_are_rejected():
    env = gym.make("distllm/BlockPlacement-PaperClustered-v0", overrides=["workload.num_requests=12"])
    policy = PlacementEnvPolicy("cg-bp", env)
    rec = record_episode(env, policy, seed=0).to_dict()
    # a different (valid) first span changes the simulated per-token time at the end
    other = dict(rec, actions=list(rec["actions"]))
    u = env.unwrapped
    u.reset(seed=0)
    valid = np.flatnonzero(u.action_masks())
    other["actions"][0] = int(valid[1] if valid[0] == rec["actions"][0] else valid[0])
    bad = replay(other)
    assert not bad.valid and any("reward" in m for m in bad.mismatches)
    # a changed reward
    wrong = dict(rec, rewards=list(rec["rewards"]))
    wrong["rewards"][-1] += 1e-9
    assert not replay(wrong).valid
    assert replay(wrong, reward_atol=1e-6).valid
    # actions beyond the end of the episode
    longer = dict(rec, actions=list(rec["actions"]) + [0], rewards=list(rec["rewards"]) + [0.0])
    assert any("ended after" in m for m in replay(longer).mismatches)
    # a scenario that changed under the record (the hash no longer matches)
    changed = dict(rec, overrides=list(rec["overrides"]) + ["network.initial_delay_ms=101"])
    assert any("hash" in m for m in replay(changed).mismatches)


def test_scenario_given_as_a_mapping_is_recorded_in_full():
    sc = distllm_env.load_scenario("tiny", ["workload.num_requests=5"])
    raw = dict(sc.raw)
    env = gym.make("distllm/RequestRouting-v0", scenario=raw)
    rec = record_episode(env, MaskedRandomPolicy(1), seed=2)
    assert rec.scenario is None and rec.scenario_raw["workload"]["num_requests"] == 5 and rec.overrides == ()
    assert json.loads(rec.to_json())["scenario_raw"]["name"] == "tiny"
    assert replay(rec).valid


def test_malformed_records_raise():
    with pytest.raises(ValueError, match="missing"):
        EpisodeRecord.from_dict({"env_id": "distllm/RequestRouting-v0"})
    with pytest.raises(ValueError, match="format"):
        EpisodeRecord.from_dict({"env_id": "x", "scenario_hash": "h", "config": {}, "seed": 0, "actions": [],
                                 "format": 99})


def test_docs_list_every_observation_key_and_config_key():
    text = DOCS.read_text()
    for env_id, cfg in [("distllm/RequestRouting-v0", {}), ("distllm/BlockPlacement-v0", {}),
                        ("distllm/ClientSplit-v0", {}), ("distllm/ClientSplit-v0", {"mode": "per_request"})]:
        env = gym.make(env_id, config=cfg)
        for key in env.observation_space.spaces:
            assert f"`{key}`" in text, key
        for key in env.unwrapped.default_config():
            assert f"`{key}`" in text, key


def test_docs_examples_run(tmp_path, monkeypatch):
    """Every ```python block of docs/envs.md runs as written (the runnable examples)."""
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(blocks) >= 5
    for code in blocks:
        exec(compile(code, str(DOCS), "exec"), {"__name__": "__docs__"})

"""API conformance of every registered ``distllm/*`` environment id (MiniGrid / HighwayEnv style).

Every test is parametrised over :func:`distllm_env.envs.registered_ids`; episodes are shortened with
scenario overrides / config so the whole file stays fast.  ``check_env`` runs inside
``warnings.catch_warnings`` and fails on any warning outside the explicit allow-list.
"""

from __future__ import annotations

import functools
import json
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import distllm_env  # noqa: F401 - registers the ids
from distllm_env.envs import ENTRY_POINTS, registered_ids

ALL_IDS = registered_ids()

#: warnings check_env may emit that we accept (none at the moment; keep the list explicit)
CHECK_ENV_IGNORE_WARNINGS: tuple[str, ...] = ()


def fast_kwargs(env_id: str) -> dict:
    """Kwargs that shorten an episode of ``env_id`` (fewer requests) without changing its spaces."""
    if "ClientSplit" in env_id:
        return {"config": {"num_requests": 4}}
    if "BlockPlacement" in env_id:
        return {"overrides": ["workload.num_requests=8"]}
    if "SwarmPlacement" in env_id:     # denser churn: a short workload still sees several joins
        return {"overrides": ["workload.num_requests=25", "churn.mean_uptime_s=120", "churn.mean_downtime_s=30"]}
    return {"overrides": ["workload.num_requests=25"]}


def make(env_id: str, **extra):
    return gym.make(env_id, disable_env_checker=True, **(fast_kwargs(env_id) | extra))


def _unexpected(caught) -> list[str]:
    return [str(w.message) for w in caught if not any(s in str(w.message) for s in CHECK_ENV_IGNORE_WARNINGS)]


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == "f")
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


def test_every_decision_and_preset_is_registered():
    assert {"distllm/BlockPlacement-v0", "distllm/RequestRouting-v0", "distllm/ClientSplit-v0"} <= set(ALL_IDS)
    presets = distllm_env.list_presets()
    for p in presets:
        camel = "".join(part.capitalize() for part in p.split("-"))
        if p.startswith("splitllm-"):
            assert f"distllm/ClientSplit-{camel}-v0" in ALL_IDS
        else:
            assert f"distllm/BlockPlacement-{camel}-v0" in ALL_IDS
            assert f"distllm/RequestRouting-{camel}-v0" in ALL_IDS
    for env_id in ALL_IDS:
        assert gym.spec(env_id).entry_point in ENTRY_POINTS.values()
    # idempotent
    distllm_env.envs.register_envs()
    assert registered_ids() == ALL_IDS


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_builds_with_no_kwargs(env_id):
    env = gym.make(env_id)
    assert isinstance(env.action_space, gym.spaces.Discrete)
    assert isinstance(env.observation_space, gym.spaces.Dict)
    for key, space in env.observation_space.spaces.items():
        assert isinstance(space, gym.spaces.Box) and space.dtype == np.float32 and len(space.shape) == 1, key
        assert np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)), key
    assert set(env.unwrapped.default_config()) == set(env.unwrapped.config)
    env.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnasium_check_env(env_id):
    env = make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert not _unexpected(caught)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_sb3_check_env(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env.unwrapped, warn=True)
    assert not _unexpected(caught)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_passive_checker_and_reset_info(env_id):
    env = gym.make(env_id, **fast_kwargs(env_id))          # with the PassiveEnvChecker wrapper
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obs, info = env.reset(seed=0)
        mask = env.unwrapped.action_masks()
        assert mask.dtype == bool and mask.shape == (env.action_space.n,) and mask.any()
        assert info["action_mask"].dtype == np.int8 and np.array_equal(info["action_mask"].astype(bool), mask)
        assert info["scenario_seed"] == 0
        obs, r, terminated, truncated, info = env.step(int(np.argmax(mask)))
        assert isinstance(r, float) and truncated is False and info["invalid_action"] is False
        assert r == pytest.approx(sum(info["reward_components"].values()), rel=1e-12, abs=1e-12)
    assert not _unexpected(caught)


def _rollout(env, seed: int, steps: int, rng_seed: int = 3) -> list:
    rng = np.random.default_rng(rng_seed)
    out = []
    obs, info = env.reset(seed=seed)
    out.append((obs, info))
    for _ in range(steps):
        a = int(rng.choice(np.flatnonzero(info["action_mask"])))
        obs, r, term, trunc, info = env.step(a)
        out.append((obs, r, term, trunc, info))
        if term or trunc:
            obs, info = env.reset()            # seed drawn from np_random: must agree too
            out.append((obs, info))
    return out


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_two_env_seeded_rollout_determinism(env_id):
    a, b = make(env_id), make(env_id)
    ra, rb = _rollout(a, 11, 40), _rollout(b, 11, 40)
    assert _equal(ra, rb)
    # a different seed gives a different episode somewhere (the workload or the instance differs)
    rc = _rollout(make(env_id), 12, 40)
    assert not _equal(ra, rc)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_pickle_round_trip(env_id):
    env = make(env_id)
    env.reset(seed=4)
    first = int(np.flatnonzero(env.unwrapped.action_masks())[-1])
    clone = pickle.loads(pickle.dumps(env))
    out = env.step(first)
    assert _equal(out, clone.step(first))                # the state after reset survives
    if not (out[2] or out[3]):       # not a one-step episode (BlockPlacementSessions-*): never step past the end
        clone = pickle.loads(pickle.dumps(env))
        a = int(np.argmax(env.unwrapped.action_masks()))
        assert _equal(env.step(a), clone.step(a))        # mid-episode state survives
    assert _equal(env.reset(seed=9), clone.reset(seed=9))


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_spec_to_json(env_id):
    spec = gym.spec(env_id)
    text = spec.to_json()
    assert json.loads(text)["id"] == env_id
    assert gym.envs.registration.EnvSpec.from_json(text) == spec
    env = make(env_id)
    json.loads(env.spec.to_json())                        # with the shortened kwargs too


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_sync_vector_env(env_id):
    venv = gym.vector.SyncVectorEnv([functools.partial(make, env_id)] * 2)
    obs, info = venv.reset(seed=[0, 1])
    for _ in range(6):
        acts = [int(np.argmax(m)) for m in info["action_mask"]]
        obs, r, term, trunc, info = venv.step(acts)
        assert r.shape == (2,) and not trunc.any()
        assert venv.observation_space.contains(obs)
    venv.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_async_vector_env(env_id):
    venv = gym.vector.AsyncVectorEnv([functools.partial(make, env_id)] * 2, context="fork")
    try:
        obs, info = venv.reset(seed=[5, 6])
        sync = gym.vector.SyncVectorEnv([functools.partial(make, env_id)] * 2)
        sobs, sinfo = sync.reset(seed=[5, 6])
        assert _equal(obs, sobs)
        for _ in range(5):
            acts = [int(np.argmax(m)) for m in info["action_mask"]]
            obs, r, *_rest, info = venv.step(acts)
            sobs, sr, *_srest, sinfo = sync.step(acts)
            assert _equal(obs, sobs) and np.array_equal(r, sr)
    finally:
        venv.close()


_WORKER_SCRIPT = r"""
import json, sys
import gymnasium as gym                       # note: distllm_env is NOT imported here
assert "distllm_env" not in sys.modules
jobs = json.loads(sys.argv[1])
out = {}
for env_id, kwargs in jobs:
    env = gym.make("distllm_env:" + env_id, disable_env_checker=True, **kwargs)
    obs, info = env.reset(seed=3)
    obs2, r, term, trunc, info = env.step(int(info["action_mask"].argmax()))
    out[env_id] = {"obs": {k: v.tolist() for k, v in obs.items()}, "reward": r}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def worker_results():
    """One fresh interpreter makes every id through the module prefix (what SubprocVecEnv /
    AsyncVectorEnv workers started with spawn or forkserver do)."""
    import subprocess
    import sys

    jobs = [(i, fast_kwargs(i)) for i in ALL_IDS]
    proc = subprocess.run([sys.executable, "-c", _WORKER_SCRIPT, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_worker_process_make_with_module_prefix(env_id, worker_results):
    got = worker_results[env_id]
    env = make(env_id)
    obs, info = env.reset(seed=3)
    assert all(np.array_equal(np.asarray(got["obs"][k], dtype=np.float32), obs[k]) for k in obs)
    _, r, *_ = env.step(int(info["action_mask"].argmax()))
    assert got["reward"] == r


def test_async_vector_env_spawn_worker():
    """A spawned AsyncVectorEnv worker (no fork: nothing inherited) builds an env by module prefix."""
    fn = functools.partial(gym.make, "distllm_env:distllm/RequestRouting-Tiny-v0", disable_env_checker=True,
                           **fast_kwargs("distllm/RequestRouting-Tiny-v0"))
    venv = gym.vector.AsyncVectorEnv([fn], context="spawn")
    try:
        obs, info = venv.reset(seed=[2])
        lobs, _ = make("distllm/RequestRouting-Tiny-v0").reset(seed=2)
        assert all(np.array_equal(obs[k][0], lobs[k]) for k in lobs)
    finally:
        venv.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_masked_random_policy_never_takes_an_invalid_action(env_id):
    env = make(env_id)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    episodes = 0
    for step in range(1000):
        mask = env.unwrapped.action_masks()
        assert mask.any() and np.array_equal(mask, info["action_mask"].astype(bool))
        a = int(rng.choice(np.flatnonzero(mask)))
        obs, r, term, trunc, info = env.step(a)
        assert info["invalid_action"] is False and info["action"] == a
        assert np.isfinite(r)
        if term or trunc:
            episodes += 1
            obs, info = env.reset(seed=episodes % 3)   # repeat seeds: the instance / placement caches hit
    assert env.observation_space.contains(obs)


GARBAGE = [-1, 10**9, 2.5, np.array([0, 1]), "x", None, float("nan"), np.int64(-3)]


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_unmasked_random_policy_never_crashes(env_id):
    env = make(env_id, config={**fast_kwargs(env_id).get("config", {}), "invalid_action_penalty": 0.5})
    rng = np.random.default_rng(1)
    obs, info = env.reset(seed=1)
    invalid = 0
    for step in range(300):
        a = GARBAGE[step] if step < len(GARBAGE) else int(rng.integers(0, env.action_space.n))
        mask_before = env.unwrapped.action_masks()
        obs, r, term, trunc, info = env.step(a)
        assert env.observation_space.contains(obs)
        was_valid = isinstance(a, (int, np.integer)) and 0 <= a < len(mask_before) and mask_before[a]
        assert info["invalid_action"] is (not was_valid)
        assert mask_before[info["action"]]
        assert info["reward_components"]["invalid_action"] == (-0.5 if not was_valid else 0.0)
        invalid += info["invalid_action"]
        if term or trunc:
            obs, info = env.reset()
    assert invalid >= len(GARBAGE) - 1                     # 2.5 is not integral; every garbage action is invalid


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_render_modes(env_id):
    for mode in ("ansi", "rgb_array"):
        env = make(env_id, render_mode=mode)
        env.reset(seed=0)
        env.step(int(np.argmax(env.unwrapped.action_masks())))
        out = env.render()
        if mode == "ansi":
            assert isinstance(out, str) and env.unwrapped.scenario.name in out
        else:
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.std() > 0
        env.close()
        env.close()                                        # idempotent


def test_client_split_needs_a_split_section_and_step_needs_reset():
    from distllm_env.envs.routing import RequestRoutingEnv
    from distllm_env.errors import ScenarioError

    with pytest.raises(ScenarioError) as err:
        gym.make("distllm/ClientSplit-v0", scenario="tiny")
    assert err.value.path == "split"
    env = RequestRoutingEnv(scenario="tiny")
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)

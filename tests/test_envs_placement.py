"""BlockPlacement: span encoding, the coverage conditions, masks, orders, dead ends and rewards."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest

import distllm_env  # noqa: F401
from distllm_env import simulate
from distllm_env.envs.placement import coverage_ok, decode_span, encode_span, num_span_actions, span_tables
from distllm_env.envs.policies import MaskedRandomPolicy, PlacementEnvPolicy, run_episode
from distllm_env.perf import conservative_block_count


def make(scenario="tiny", overrides=(), config=None):
    return gym.make("distllm/BlockPlacement-v0", scenario=scenario, overrides=list(overrides), config=config or {},
                    disable_env_checker=True)


@pytest.mark.parametrize("B", [1, 2, 5, 12])
def test_span_encoding_is_a_bijection_in_count_then_start_order(B):
    n = num_span_actions(B)
    assert n == 1 + B * (B + 1) // 2
    seen = [decode_span(a, B) for a in range(n)]
    expected = [(0, 0)] + [(s, c) for c in range(1, B + 1) for s in range(0, B - c + 1)]
    assert seen == expected
    assert all(encode_span(s, c, B) == a for a, (s, c) in enumerate(expected))
    starts, counts = span_tables(B)
    assert np.all(starts + counts <= B)
    with pytest.raises(ValueError):
        encode_span(B, 1, B)
    with pytest.raises(ValueError):
        decode_span(n, B)


def _coverable(U: np.ndarray, caps) -> bool:
    """Brute force: can one interval per server (length ≤ its cap, or none) cover every True of U?"""
    L = len(U)
    need = set(np.flatnonzero(U))
    if not need:
        return True
    options = [[None] + [(s, c) for c in range(1, cap + 1) for s in range(0, L - c + 1)] for cap in caps]
    for choice in itertools.product(*options):
        covered = set()
        for iv in choice:
            if iv is not None:
                covered.update(range(iv[0], iv[0] + iv[1]))
        if need <= covered:
            return True
    return False


def test_coverage_conditions_are_necessary_and_exact_for_equal_sizes():
    rng = np.random.default_rng(0)
    checked = exact = 0
    for _ in range(400):
        L = int(rng.integers(2, 9))
        r = int(rng.integers(0, 4))
        U = rng.random(L) < rng.uniform(0.2, 0.9)
        equal = rng.random() < 0.4
        caps = [int(rng.integers(1, L + 1))] * r if equal else [int(x) for x in rng.integers(1, L + 1, size=r)]
        truth = _coverable(U, caps)
        got = bool(coverage_ok(U[None, :], np.array(caps, dtype=np.int64))[0])
        assert got or not truth, (U, caps)           # necessary: never rejects a coverable state
        if equal or r <= 1:
            assert got == truth, (U, caps)           # exact for equal sizes and for r ≤ 1
            exact += 1
        checked += 1
    assert exact > 100


def test_coverage_conditions_can_miss_a_mixed_size_dead_end():
    # U = {0,1} ∪ {5,6}, later sizes 3 and 1: passes both necessary conditions but no cover exists
    U = np.array([1, 1, 0, 0, 0, 1, 1, 0], dtype=bool)
    assert coverage_ok(U[None, :], np.array([3, 1]))[0]
    assert not _coverable(U, [3, 1])


def _memory_for(count: int) -> float:
    """memory_gb that gives the tiny toy GPU exactly ``count`` blocks with one session."""
    from distllm_env import build_instance, load_scenario

    inst = build_instance(load_scenario("tiny"), 0)
    per = inst.block_bytes + inst.kv_block_bytes
    return round((count + 0.5) * per / 1e9, 6)


def test_dead_end_terminates_with_the_uncovered_penalty():
    over = ["workload.num_requests=4", f"servers.0.memory_gb={_memory_for(1)}", f"servers.1.memory_gb={_memory_for(3)}",
            f"servers.2.memory_gb={_memory_for(3)}", f"servers.3.memory_gb={_memory_for(1)}"]
    env = make("tiny", over, {"server_order": "given", "uncovered_penalty": 55.0})
    obs, info = env.reset(seed=0)
    u = env.unwrapped
    assert u.caps.tolist() == [1, 3, 3, 1]
    mask = info["action_mask"].astype(bool)
    assert mask[u.encode_action(7, 1)]
    obs, r, term, _, info = env.step(u.encode_action(7, 1))           # U = blocks 0-6
    assert not term and r == 0.0
    assert info["action_mask"][u.encode_action(2, 3)]                 # U → {0,1} ∪ {5,6}: passes the test
    obs, r, term, _, info = env.step(u.encode_action(2, 3))
    assert term and r == -55.0 and u.dead_end
    assert info["uncovered_ranges"] == [[0, 1], [5, 6]]
    assert env.unwrapped.action_masks().tolist()[:2] == [True, False]


@pytest.mark.parametrize("scenario", ["tiny", "paper-clustered", "petals-swarm"])
def test_masked_random_placements_cover_the_model_within_the_caps(scenario):
    env = make(scenario, ["workload.num_requests=4"], {"server_order": "random"})
    u = env.unwrapped
    finished = 0
    for seed in range(6):
        out = run_episode(env, MaskedRandomPolicy(seed), seed=seed)
        if u.dead_end:
            continue
        finished += 1
        pl = u.result.placement
        assert not pl.uncovered_ranges()
        assert np.all(pl.count_array <= u.caps)
        assert np.all(pl.start_array + pl.count_array <= u.instance.num_blocks)
        assert out["steps"] == u.instance.num_servers
        assert all(r == 0.0 for r in out["rewards"][:-1]) and out["rewards"][-1] < 0
    assert finished >= 4


def test_caps_are_one_session_conservative_counts():
    env = make("paper-clustered", ["workload.num_requests=4"])
    env.reset(seed=0)
    inst = env.unwrapped.instance
    expect = conservative_block_count(inst.memory_bytes, inst.block_bytes, inst.kv_block_bytes, 1, inst.num_blocks,
                                      inst.max_blocks)
    np.testing.assert_array_equal(env.unwrapped.caps, expect)
    assert env.unwrapped.caps.tolist()[:2] == [env.unwrapped.caps[0]] * 2 and env.unwrapped.caps[2] == 4  # MIG cap


def test_server_orders():
    env = make("paper-clustered", ["workload.num_requests=4"])
    env.reset(seed=0)
    u = env.unwrapped
    assert np.all(np.diff(u.t_tilde[u.order]) >= 0)
    assert set(u.order[:2].tolist()) == {0, 1}                        # the A100s have the smallest t̃
    given = make("paper-clustered", ["workload.num_requests=4"], {"server_order": "given"})
    given.reset(seed=0)
    assert given.unwrapped.order.tolist() == list(range(9))
    rnd = make("paper-clustered", ["workload.num_requests=4"], {"server_order": "random"})
    orders = []
    for seed in (0, 0, 1, 2):
        rnd.reset(seed=seed)
        orders.append(rnd.unwrapped.order.tolist())
    assert orders[0] == orders[1] and len({tuple(o) for o in orders}) >= 2
    obs, info = rnd.reset(seed=1)
    j = rnd.unwrapped.current_server
    assert obs["current_server"][j] == 1 and obs["current_server"].sum() == 1 and info["server"] == j


def test_final_reward_is_the_simulated_per_token_time():
    env = make("paper-clustered", ["workload.num_requests=30"], {"router": "shortest"})
    out = run_episode(env, MaskedRandomPolicy(4), seed=2)
    u = env.unwrapped
    res = simulate(u.scenario, placement=u.result, routing="shortest", seed=2, allocation_delays={})
    assert res.summary["num_rejected"] == 0
    assert out["rewards"][-1] == pytest.approx(-res.summary["mean_per_token_time_s"], rel=1e-12)
    assert out["info"]["summary"]["mean_per_token_time_s"] == res.summary["mean_per_token_time_s"]


def test_reward_baseline_normalises_by_the_baseline_placement():
    env = make("paper-clustered", ["workload.num_requests=30"], {"router": "shortest", "reward_baseline": "even"})
    policy = PlacementEnvPolicy("even", env)
    out = run_episode(env, policy, seed=1)
    assert out["rewards"][-1] == pytest.approx(-1.0, rel=1e-12)        # the baseline against itself
    env2 = make("paper-clustered", ["workload.num_requests=30"], {"router": "shortest", "reward_baseline": "even"})
    out2 = run_episode(env2, PlacementEnvPolicy("cg-bp", env2), seed=1)
    base = simulate("paper-clustered", "even", "shortest", seed=1, overrides=["workload.num_requests=30"],
                    allocation_delays={}).summary["mean_per_token_time_s"]
    mine = simulate("paper-clustered", "cg-bp", "shortest", seed=1, overrides=["workload.num_requests=30"],
                    allocation_delays={}).summary["mean_per_token_time_s"]
    assert out2["rewards"][-1] == pytest.approx(-mine / base, rel=1e-12)
    assert out2["info"]["summary"]["baseline_per_token_time_s"] == pytest.approx(base, rel=1e-12)


def test_observation_tracks_decisions():
    env = make("tiny", ["workload.num_requests=4"], {"server_order": "given"})
    obs, info = env.reset(seed=0)
    assert obs["block_mask"].sum() == 8 and obs["block_coverage"].sum() == 0 and obs["progress"][0] == 0
    obs, *_ = env.step(env.unwrapped.encode_action(2, 3))
    assert obs["server_decided"][0] == 1 and obs["server_start_frac"][0] == pytest.approx(2 / 8)
    assert obs["server_count_frac"][0] == pytest.approx(3 / 8)
    assert obs["block_coverage"][:8].tolist() == [0, 0, 1, 1, 1, 0, 0, 0]
    assert obs["current_server"][1] == 1 and obs["progress"][0] == pytest.approx(0.25)

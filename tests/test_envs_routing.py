"""RequestRouting: candidates, exact waiting times, rewards, masks, seeding and config validation."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import distllm_env  # noqa: F401
from distllm_env import build_instance, generate_requests, load_scenario
from distllm_env.errors import ScenarioError
from distllm_env.envs.policies import MaskedRandomPolicy, run_episode

CONGESTED = [
    # (scenario, overrides, config): published book + back-off, with waiting
    ("paper-clustered", ["workload.arrival_rate_per_s=2.0", "workload.num_requests=60"], {"placement": "even"}),
    # calendar book, back-off off (tiny's default), small KV pool so requests queue
    ("tiny", ["workload.arrival_rate_per_s=20", "workload.num_requests=60"], {"cache_policy": "fixed_pool(150)"}),
    # calendar book with back-off on
    ("tiny", ["workload.arrival_rate_per_s=20", "workload.num_requests=60", "simulator.backoff=true"],
     {"cache_policy": "fixed_pool(150)"}),
    # published book without back-off, several clients and lengths
    ("petals-swarm", ["workload.arrival_rate_per_s=5", "workload.num_requests=60", "simulator.reservation=published",
                      "simulator.backoff=false"], {"placement": "even", "cache_policy": "fixed_pool(1000)"}),
]


def make(scenario, overrides=(), config=None, **kw):
    return gym.make("distllm/RequestRouting-v0", scenario=scenario, overrides=list(overrides), config=config or {},
                    disable_env_checker=True, **kw)


@pytest.mark.parametrize("scenario,overrides,config", CONGESTED)
def test_candidate_waits_are_the_simulators_exact_starts(scenario, overrides, config):
    """cand_wait_s is Simulation.evaluate(request, chain).start_s − now for every candidate at every
    step, and the realised per-token time of the chosen chain is what the candidate predicted."""
    env = make(scenario, overrides, config)
    u = env.unwrapped
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=1)
    waited = 0
    while True:
        req, sim = u.request, u.sim
        for k, route in enumerate(u.candidate_routes):
            out = sim.evaluate(req, route)
            if out.start_s is None:
                assert u._starts[k] is None and obs["cand_fits"][k] == 0
            else:
                assert u._starts[k] == out.start_s
                assert obs["cand_wait_s"][k] == np.float32(out.start_s - sim.now_s)
        expected = u.expected_per_token_s()
        a = int(rng.choice(np.flatnonzero(info["action_mask"])))
        obs, r, term, trunc, info = env.step(a)
        rec = sim.records[req.id]
        assert rec.completed
        assert r == -(rec.completion_s - rec.arrival_s) / rec.output_tokens
        assert math.isclose(-r, expected[a], rel_tol=1e-12)
        waited += rec.wait_s > 0
        if term:
            break
    assert waited > 0, "the scenario was meant to be congested"


def test_candidates_are_the_k_cheapest_static_chains():
    """Against brute force: every feasible chain priced with the static cost, sorted, first K."""
    K = 5
    env = make("paper-clustered", ["workload.num_requests=3"], {"K": K, "placement": "even"})
    u = env.unwrapped
    obs, _ = env.reset(seed=0)
    req, view = u.request, u.view
    dag = view.feasible_dag(req.client)
    inst = u.instance
    l1 = req.output_tokens - 1
    t_in = inst.prefill_comm_s(req.prompt_tokens)[req.client]
    tau_in = inst.tau_prefill_s(req.prompt_tokens)
    costs = sorted(sum(t_in[h.server] + l1 * inst.token_cost_s[req.client, h.server]
                       + (tau_in[h.server] + l1 * inst.tau_decode_s[h.server]) * h.blocks for h in r.hops)
                   for r in dag.all_chains())
    assert len(costs) > K
    np.testing.assert_allclose(obs["cand_static_s"], np.float32(costs[:K]), rtol=1e-6)
    assert np.all(np.diff(obs["cand_static_s"]) >= 0)
    assert obs["cand_mask"].sum() == K
    # the per-server blocks of each candidate sum to L/L = 1
    blocks = obs["cand_blocks_frac"].reshape(K, -1)
    np.testing.assert_allclose(blocks.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(obs["cand_hops"], (blocks > 0).sum(axis=1))


def test_fewer_chains_than_k_are_masked():
    env = make("tiny", ["workload.num_requests=3"], {"K": 64})
    obs, info = env.reset(seed=0)
    u = env.unwrapped
    n = len(u.view.feasible_dag(0).all_chains())
    assert n < 64
    assert info["action_mask"].sum() == n and info["action_mask"][:n].all()
    assert obs["cand_mask"].sum() == n and obs["cand_static_s"][n:].sum() == 0


def test_chain_that_never_fits_is_rejected_with_the_penalty():
    """A 1-token KV pool per block cannot hold any session: every candidate is unfit, all stay valid
    (mask_unfit has nothing to keep), and any choice is rejected at −rejection_penalty."""
    env = make("tiny", ["workload.num_requests=4"], {"cache_policy": "fixed_pool(1)", "rejection_penalty": 7.5})
    obs, info = env.reset(seed=0)
    assert obs["cand_fits"].sum() == 0 and info["action_mask"].sum() == obs["cand_mask"].sum()
    obs, r, term, trunc, info = env.step(0)
    assert r == -7.5 and info["rejected"] is True
    rec = env.unwrapped.sim.records[0]
    assert rec.status == "rejected" and rec.reason == "insufficient_memory"
    assert info["reward_components"] == {"per_token_time": 0.0, "rejection": -7.5, "invalid_action": -0.0}


def test_invalid_action_uses_the_lowest_valid_candidate_and_the_penalty():
    a = make("tiny", ["workload.num_requests=5"], {"K": 4, "invalid_action_penalty": 2.0})
    b = make("tiny", ["workload.num_requests=5"], {"K": 4, "invalid_action_penalty": 2.0})
    _, ia = a.reset(seed=3)
    b.reset(seed=3)
    lowest = int(np.argmax(ia["action_mask"]))
    oa, ra, *_x, info_a = a.step(99)
    ob, rb, *_y, info_b = b.step(lowest)
    assert info_a["invalid_action"] is True and info_a["action"] == lowest and info_b["invalid_action"] is False
    assert ra == rb - 2.0
    assert all(np.array_equal(oa[k], ob[k]) for k in oa)


def test_episode_uses_simulates_instance_and_requests():
    sc = load_scenario("paper-gtsce", ["workload.num_requests=12"])
    env = make(sc)
    env.reset(seed=5)
    u = env.unwrapped
    inst = build_instance(sc, 5)
    assert u.instance.num_servers == inst.num_servers == 60
    np.testing.assert_array_equal(u.instance.rtt_s, inst.rtt_s)
    assert [r.arrival_s for r in u.sim.requests] == [r.arrival_s for r in generate_requests(inst, 5)]
    obs, _ = env.reset(seed=5)
    assert obs["server_mask"].sum() == 60


def test_reset_without_seed_draws_reproducible_scenario_seeds():
    a, b = make("tiny", ["workload.num_requests=3"]), make("tiny", ["workload.num_requests=3"])
    a.reset(seed=42)
    b.reset(seed=42)
    seeds_a = [a.reset()[1]["scenario_seed"] for _ in range(3)]
    seeds_b = [b.reset()[1]["scenario_seed"] for _ in range(3)]
    assert seeds_a == seeds_b and len(set(seeds_a)) == 3


def test_allocation_delay_family_adds_the_scenarios_delay():
    base = run_episode(make("paper-clustered", ["workload.num_requests=5"]), MaskedRandomPolicy(0), seed=0)
    env = make("paper-clustered", ["workload.num_requests=5"], {"allocation_delay_family": "proposed"})
    delayed = run_episode(env, MaskedRandomPolicy(0), seed=0)
    assert env.unwrapped.sim.allocation_delay_s == 60.0
    # cg-bp leaves room for every session, so no wait: each request is exactly 60 s / 128 tokens slower
    np.testing.assert_allclose(np.array(delayed["rewards"]), np.array(base["rewards"]) - 60.0 / 128, rtol=1e-12)


def test_terminates_after_num_requests_and_masks_the_terminal_state():
    env = make("tiny", ["workload.num_requests=7"])
    out = run_episode(env, MaskedRandomPolicy(1), seed=0)
    assert out["steps"] == 7
    s = out["info"]["summary"]
    assert s["num_completed"] == 7
    assert s["mean_per_token_time_s"] == pytest.approx(-sum(out["rewards"]) / 7)   # tiny: fixed 32 tokens
    mask = env.unwrapped.action_masks()
    assert mask.tolist() == [True] + [False] * (len(mask) - 1)


@pytest.mark.parametrize("bad,path", [
    ({"K": 0}, "config.K"), ({"nonsense": 1}, "config.nonsense"), ({"max_time_s": -1}, "config.max_time_s"),
    ({"cache_policy": "pool"}, "config.cache_policy"), ({"mask_unfit": "yes"}, "config.mask_unfit"),
    ({"max_blocks": 4}, "config.max_blocks"),
])
def test_bad_config_raises_naming_the_field(bad, path):
    with pytest.raises(ScenarioError) as err:
        make("tiny", config=bad)
    assert err.value.path == path


def test_scenario_larger_than_the_padding_is_an_error_at_reset():
    env = make("paper-gtsce", ["workload.num_requests=3"], {"max_servers": 32})
    with pytest.raises(ScenarioError, match="max_servers=32") as err:
        env.reset(seed=0)
    assert err.value.path == "config.max_servers"


def test_one_agent_runs_on_every_scenario_that_fits():
    envs = [make(s, ["workload.num_requests=3"]) for s in ("tiny", "paper-gtsce", "petals-swarm")]
    assert all(e.observation_space == envs[0].observation_space for e in envs)
    assert all(e.action_space == envs[0].action_space for e in envs)
    for e in envs:
        obs, _ = e.reset(seed=0)
        assert envs[0].observation_space.contains(obs)


def test_scenario_by_name_path_mapping_or_object_gives_the_same_episode():
    from distllm_env.scenario import preset_path

    over = ["workload.num_requests=5"]
    sc = load_scenario("tiny", over)
    variants = [make("tiny", over), make(str(preset_path("tiny")), over), make(dict(sc.raw)), make(sc)]
    firsts = []
    for env in variants:
        obs, _ = env.reset(seed=2)
        firsts.append(run_episode(env, MaskedRandomPolicy(0), seed=2)["rewards"])
        assert env.unwrapped.scenario.hash == sc.hash
    assert all(f == firsts[0] for f in firsts)

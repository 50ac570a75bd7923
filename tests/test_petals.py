"""PETALS baseline: _choose_num_blocks, weakest-window selection, swarm join and rebalancing, and the
min-latency router (baselines/petals.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distllm_env.api import simulate
from distllm_env.catalog import GIB, default_catalog
from distllm_env.errors import PlacementError, ScenarioError
from distllm_env.instance import build_instance
from distllm_env.placement import CachePolicy, Placement, PlacementResult
from distllm_env.policies import family_of, make_placement, make_routing
from distllm_env.scenario import load_scenario
from distllm_env.simulator import ClientPart, Simulation
from distllm_env.workload import Request
from distllm_env.baselines.petals import (PetalsPlacement, PetalsRouter, best_start, block_throughputs,
                                          cache_bytes_per_block, choose_num_blocks, rebalance,
                                          server_throughputs)

BLOOM = default_catalog().model("BLOOM-176B")
LLAMA2 = default_catalog().model("Llama-2-70B")
TINY_250MB = [f"servers.{j}.memory_gb=0.25" for j in range(4)]


# -- _choose_num_blocks --------------------------------------------------------------------------------

def test_choose_num_blocks_bloom_on_a100_and_mig():
    # docs/contracts.md §4: PETALS hosts 53 BLOOM-176B blocks on an 86.13 GB A100 and 4 on a 9.1 GB MIG 1g
    assert choose_num_blocks(int(86.13e9), BLOOM, None) == 53
    assert choose_num_blocks(int(9.1e9), BLOOM, 4) == 4
    # the MIG cap binds: uncapped, 9.1 GB would give floor((9.1e9 − 2 GiB) / (s_m + 4096-token cache)) = 4 too,
    # so check the cap with a bigger slice
    assert choose_num_blocks(int(20e9), BLOOM, None) == 11
    assert choose_num_blocks(int(20e9), BLOOM, 4) == 4


def test_choose_num_blocks_hand_computed_formula():
    # BLOOM: s_m = 2,466,437,120 · 4.25/8 · 1.01 = 1,323,397,667 B; cache = 2·14336·4096·2 = 234,881,024 B;
    # reserve = 2 GiB.  (86.13e9 − 2,147,483,648) / 1,558,278,691 = 53.89…
    assert BLOOM.block_bytes == 1_323_397_667
    assert cache_bytes_per_block(BLOOM) == 234_881_024
    assert math.floor((86.13e9 - 2 * GIB) / (1_323_397_667 + 234_881_024)) == 53
    # Llama-2-70B is GQA (8 KV groups): T = 16384 tokens, cache = 2·(8192/8)·16384·2 = 64 MiB per block;
    # reserve = 2 GiB · 8192/14336; s_m = 855,654,400 · 4.25/8 · 1.01 = 459,112,064 B
    assert cache_bytes_per_block(LLAMA2) == 64 * 2**20
    expected = math.floor((24 * GIB - 2 * GIB * 8192 / 14336) / (459_112_064 + 64 * 2**20))
    assert expected == 46
    assert choose_num_blocks(24 * GIB, LLAMA2, None) == expected
    # capped at L = 80 on an 80 GiB card (the formula gives 159)
    assert choose_num_blocks(80 * GIB, LLAMA2, None) == 80
    # too small for one block → hosts nothing
    assert choose_num_blocks(2 * GIB, BLOOM, None) == 0


def test_fixed_pool_16384_matches_petals_gqa_cache_bytes():
    # PETALS' GQA cache bytes 2·hidden·T/kv_groups·2 with T = 16384 are exactly fixed_pool(16384) per block
    pool = CachePolicy("fixed_pool", 16384)
    cap = pool.kv_capacity_bytes(np.array([80 * GIB]), LLAMA2.block_bytes, np.array([3]),
                                 LLAMA2.kv_bytes_per_block(1, 0))
    assert int(cap[0]) == 3 * 2 * 8192 * 16384 * 2 // 8


# -- weakest window --------------------------------------------------------------------------------------

def test_best_start_reference_worked_example():
    # docs/model.md §8.3: L = 6, A covers [0,4) with 10, B covers [3,6) with 4 → T = [10,10,10,14,4,4];
    # a 3-block server takes start 3
    t = block_throughputs([0, 3], [4, 3], [10.0, 4.0], 6)
    assert t.tolist() == [10, 10, 10, 14, 4, 4]
    assert best_start(t, 3) == 3


def test_best_start_ties_and_second_weakest():
    assert best_start(np.zeros(7), 3) == 0                                     # all equal → lowest start
    assert best_start(np.array([5.0, 1, 9, 1, 2, 7]), 2) == 3                  # (1,2) < (1,5) < (1,9)
    assert best_start(np.array([3.0, 3, 3]), 3) == 0


def _naive_best_start(t, m):
    """Independent reference: compare sorted windows as Python tuples."""
    return min(range(len(t) - m + 1), key=lambda i: (tuple(sorted(t[i:i + m])), i))


def test_best_start_matches_naive_on_random_vectors():
    rng = np.random.default_rng(7)
    for _ in range(300):
        L = int(rng.integers(1, 12))
        t = rng.integers(0, 4, size=L).astype(float) * rng.choice([1.0, 0.5])
        m = int(rng.integers(1, L + 1))
        assert best_start(t, m) == _naive_best_start(list(t), m)


# -- placement -------------------------------------------------------------------------------------------

def test_petals_placement_paper_clustered_replays_join():
    inst = build_instance(load_scenario("paper-clustered"), 0)
    res = PetalsPlacement().place(inst, np.random.default_rng(3))
    d = res.diagnostics
    assert sorted(d["join_order"]) == list(range(9))
    assert d["join_order"] == np.random.default_rng(3).permutation(9).tolist()
    assert list(res.placement.counts) == [53, 53] + [4] * 7
    assert str(res.cache_policy) == "fixed_pool(4096)"
    assert not res.placement.uncovered_ranges()
    # replay the joins independently: naive window choice, throughputs min(fwd/((1+m)/2), net)
    t = [0.0] * 70
    for j in d["join_order"]:
        cal, m = inst.servers[j].calibration, res.placement.counts[j]
        s = _naive_best_start(t, m)
        assert res.placement.starts[j] == s
        x = min(cal.forward_rps / ((1 + m) / 2), cal.network_rps)
        assert d["throughput_rps"][j] == pytest.approx(x)
        for b in range(s, s + m):
            t[b] += x
    assert d["swarm_bottleneck_rps"] == pytest.approx(min(t))
    assert d["rebalance_moves"] == 0 and not d["rebalance"]


def test_petals_placement_gqa_model_uses_16384_token_pool():
    inst = build_instance(load_scenario("petals-swarm"), 0)
    res = PetalsPlacement().place(inst, np.random.default_rng(0))
    assert str(res.cache_policy) == "fixed_pool(16384)"
    for j, s in enumerate(inst.servers):
        assert res.placement.counts[j] == choose_num_blocks(s.memory_bytes, inst.model, s.gpu.max_blocks)


def test_petals_placement_uncovered_raises_naming_blocks():
    inst = build_instance(load_scenario("tiny", TINY_250MB[:3] + ["servers.3.memory_gb=0.1"]), 0)
    # three servers of 2 blocks each (0.25 GB − 153 MB reserve over 25.5 MB weights + 16.8 MB cache),
    # the fourth too small for one block: blocks 6-7 stay uncovered
    with pytest.raises(PlacementError, match="6-7") as exc:
        PetalsPlacement().place(inst, np.random.default_rng(0))
    assert exc.value.uncovered == ((6, 7),)


def test_rebalance_moves_a_duplicate_server_onto_the_weak_blocks():
    # A and B both cover [0,2) with 10; C alone covers [2,4) with 1 → bottleneck 1.  Moving A or B to
    # [2,4) gives [10,10,11,11] (quality 1/10 < 0.75) → one moves; C never leaves (it would open a hole)
    counts, tputs = [2, 2, 2], [10.0, 10.0, 1.0]
    starts, moves, rounds = rebalance([0, 0, 2], counts, tputs, 4, 0.75, np.random.default_rng(0))
    assert moves == 1 and sorted(starts[:2]) == [0, 2] and starts[2] == 2
    assert block_throughputs(starts, counts, tputs, 4).min() == 10
    assert rounds == 2                     # the second round finds nothing to move
    # balance_quality 0 switches rebalancing off
    assert rebalance([0, 0, 2], counts, tputs, 4, 0.0, np.random.default_rng(0))[1] == 0


def test_rebalance_closes_a_hole():
    # A and B both on [0,2) of a 4-block model: bottleneck 0.  The simulated re-placement reaches
    # [10,10,10,10]; quality 0/10 < 0.75 → one server moves into the hole [2,4)
    starts, moves, _ = rebalance([0, 0], [2, 2], [10.0, 10.0], 4, 0.75, np.random.default_rng(0))
    assert sorted(starts) == [0, 2] and moves == 1


def test_rebalance_hysteresis_keeps_a_balanced_swarm():
    # two equal servers on disjoint halves: nobody gains by moving
    starts, moves, _ = rebalance([0, 2], [2, 2], [5.0, 5.0], 4, 0.75, np.random.default_rng(1))
    assert (starts, moves) == ([0, 2], 0)


def test_petals_placement_forced_rebalance_reaches_a_fixed_point():
    # balance_quality > 1 makes every check say MOVE (PETALS' semantics): servers leave and re-choose
    # until a whole round changes nothing — then every server sits at its best start given the others
    inst = build_instance(load_scenario("paper-clustered"), 0)
    res = PetalsPlacement(rebalance=True, balance_quality=1.5).place(inst, np.random.default_rng(0))
    d = res.diagnostics
    assert d["rebalance_moves"] > 0 and d["rebalance_rounds"] < 100
    starts, counts = list(res.placement.starts), list(res.placement.counts)
    tputs = server_throughputs(inst, counts)
    for j in range(9):
        others = block_throughputs(starts, counts, tputs, 70, exclude=j)
        assert best_start(others, counts[j]) == starts[j]
    # default quality 0.75 on the same swarm: nothing is worth moving, placement as without rebalancing
    plain = PetalsPlacement().place(inst, np.random.default_rng(0))
    soft = PetalsPlacement(rebalance=True).place(inst, np.random.default_rng(0))
    assert soft.placement == plain.placement and soft.diagnostics["rebalance_moves"] == 0


def test_petals_placement_bad_options_name_the_field():
    with pytest.raises(ScenarioError, match="balance_quality"):
        PetalsPlacement(balance_quality=-1)
    with pytest.raises(ScenarioError, match="rebalance"):
        PetalsPlacement(rebalance="yes")
    with pytest.raises(ScenarioError, match="variant"):
        PetalsRouter(variant="fastest")


# -- router ----------------------------------------------------------------------------------------------

def _sim(scenario, overrides, placement: Placement, n_requests=12, cache="leftover", seed=0, gap_s=0.5):
    inst = build_instance(load_scenario(scenario, overrides), seed)
    sc = inst.scenario
    reqs = [Request(i, 0, float(i) * gap_s, sc.max_prompt_tokens, sc.max_output_tokens) for i in range(n_requests)]
    return Simulation(inst, PlacementResult(placement, CachePolicy.parse(cache)), reqs,
                      reservation="published", backoff=False)


def _chain_cost_published(view, req, route):
    """The published simulator's PETALS weights, written out independently per chain."""
    inst = view.instance
    kv = inst.model.kv_bytes_per_block(req.prompt_tokens, req.output_tokens)
    cost, prev = 0.0, None
    for h in route.hops:
        j = h.server
        rtt = inst.rtt_s[req.client, j] if prev is None else inst.server_rtt_s[prev, j]
        cost += rtt / 2 + 0.018 + inst.tau_decode_s[j] * h.blocks
        if view.free_bytes(j) < h.blocks * kv:
            cost += 10.0
        prev = j
    return cost + inst.rtt_s[req.client, prev] / 2


def _chain_cost_petals(view, req, route):
    inst = view.instance
    kv = inst.model.kv_bytes_per_block(req.prompt_tokens, req.output_tokens)
    d = lambda rtt: min(rtt / 2, 5.0)  # noqa: E731
    cost, prev = 0.0, None
    for h in route.hops:
        j = h.server
        rtt = inst.rtt_s[req.client, j] if prev is None else inst.server_rtt_s[prev, j]
        cost += d(rtt) + 0.018 + h.blocks / inst.servers[j].calibration.inference_rps
        if view.free_bytes(j) < view.placement.counts[j] * kv:          # whole span, pessimistic
            cost += 10.0
        prev = j
    return cost + d(inst.rtt_s[req.client, prev])


@pytest.mark.parametrize("variant,cost_fn", [("published", _chain_cost_published), ("petals", _chain_cost_petals)])
def test_petals_router_is_argmin_of_its_weights_under_load(variant, cost_fn):
    rng = np.random.default_rng(11)
    for trial in range(6):
        starts, counts = [], []
        for _ in range(4):
            c = int(rng.integers(1, 6))
            counts.append(c)
            starts.append(int(rng.integers(0, 8 - c + 1)))
        starts[0], counts[0] = 0, 4
        starts[1], counts[1] = 4, 4
        placement = Placement(tuple(starts), tuple(counts), 8)
        # a 100-token pool per block holds about one full-span session per server, so penalties bite
        sim = _sim("tiny", TINY_250MB, placement, n_requests=10, cache="fixed_pool(100)")
        router = PetalsRouter(variant=variant)
        penalised = 0
        while (req := sim.next_request()) is not None:
            route = router.route(req, sim.view, rng)
            dag = sim.view.feasible_dag(req.client)
            costs = {ch: cost_fn(sim.view, req, ch) for ch in dag.all_chains()}
            assert cost_fn(sim.view, req, route) == pytest.approx(min(costs.values()), abs=1e-12)
            penalised += max(costs.values()) > 10
            sim.commit(req, route)
    assert penalised > 0

def test_petals_router_hand_computed_choice_and_penalty():
    # s0 hosts all 8 blocks (cluster 1); s2 [0,4) and s3 [4,8) (cluster 2).  Client RTT 40 ms to all,
    # s2↔s3 5 ms.  Chain s0: 0.02 + 0.018 + 8·0.002 + 0.02 = 0.074 s; chain s2→s3:
    # 0.02 + 0.018 + 0.008 + 0.0025 + 0.018 + 0.008 + 0.02 = 0.0945 s → s0.
    placement = Placement((0, 0, 0, 4), (8, 0, 4, 4), 8)
    sim = _sim("tiny", TINY_250MB, placement, n_requests=40, gap_s=1e-3)
    router = PetalsRouter()
    req = sim.next_request()
    assert router.route(req, sim.view, None).servers == (0,)
    assert _chain_cost_published(sim.view, req, router.route(req, sim.view, None)) == pytest.approx(0.074)
    # fill s0 with sessions until it lacks room for another: then the 10 s penalty sends requests to s2→s3
    kv8 = 8 * sim.view.kv_bytes_per_block(req)
    while sim.view.free_bytes(0) >= kv8:
        sim.commit(req, router.route(req, sim.view, None))
        req = sim.next_request()
    assert router.route(req, sim.view, None).servers == (2, 3)


def test_petals_router_honours_client_blocks():
    placement = Placement((0, 0, 0, 4), (8, 0, 4, 4), 8)
    sim = _sim("tiny", TINY_250MB, placement)
    sim.next_request()
    req = sim.apply_split(ClientPart(blocks=5))
    route = PetalsRouter().route(req, sim.view, None)
    assert route.hops[0].first_block == 5 and route.hops[-1].last_block == 7
    sim.commit(req, route)   # the core re-checks Lemma 1 with client_blocks


def test_petals_registered_and_family():
    assert make_placement("petals").family == "petals" and make_routing("petals").name == "petals"
    assert family_of("petals", "petals") == "petals"
    assert make_routing("petals", options={"variant": "petals"}).variant == "petals"


def test_simulate_petals_paper_clustered_is_deterministic():
    a = simulate("paper-clustered", "petals", "petals", seed=1, overrides=["workload.num_requests=30"])
    b = simulate("paper-clustered", "petals", "petals", seed=1, overrides=["workload.num_requests=30"])
    assert a.summary == b.summary
    assert a.summary["num_completed"] == 30
    # the petals family pays the preset's 250 s allocation delay on every request
    assert min(r.completion_s - r.arrival_s for r in a.records) > 250
    assert all(r.route is not None for r in a.records)
    assert str(a.placement_result.cache_policy) == "fixed_pool(4096)"

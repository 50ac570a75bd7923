"""The performance model, Lemma 1 and the chain DAG against brute force."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from distllm_env import perf
from distllm_env.chains import ChainDAG, HopCost, route_from_chain
from distllm_env.errors import NoFeasibleChain, PlacementError, RouteError
from distllm_env.placement import CachePolicy, Placement


def test_service_time_formula_hand_computed():
    # two hops of 4 blocks each, t_cj = 50 ms, t^I_cj = 52 ms, τ = 2 ms, τ^I = 5.2 ms, l_out = 32
    pre = perf.prefill_hop_cost_s(np.array([0.052, 0.052]), np.array([0.0052, 0.0052]), np.array([4, 4]))
    dec = perf.decode_hop_cost_s(np.array([0.050, 0.050]), np.array([0.002, 0.002]), np.array([4, 4]))
    assert perf.first_token_time_s(pre) == pytest.approx(0.1456)
    assert perf.service_time_s(pre, dec, 32) == pytest.approx(0.1456 + 31 * 0.116)
    # the WS-RR static link cost equals the service time split per hop
    static = perf.static_request_cost_s(0.052, 0.0052, 0.050, 0.002, 4, 32)
    assert 2 * static == pytest.approx(perf.service_time_s(pre, dec, 32))


def test_cache_slots_and_conservative_count():
    # A100 with 53 BLOOM blocks: ⌊(86.13e9 − 53·s_m)/s_c⌋
    sm, sc = round(2_466_437_120 * 4.25 / 8 * 1.01), 8_486_912
    assert perf.cache_slots(int(86.13e9), sm, 53, sc) == (int(86.13e9) - 53 * sm) // sc
    assert perf.cache_slots(int(86.13e9), sm, 0, sc) == 0          # hosting nothing: no sessions
    # CG-BP step 1 for |R| = 16: ⌊M/(s_m + 16·s_c)⌋, capped by L and the MIG cap
    m = perf.conservative_block_count([int(86.13e9), int(9.1e9)], sm, sc, 16, 70, [None, 4])
    assert list(m) == [int(86.13e9) // (sm + 16 * sc), 4]
    assert perf.petals_throughput_rps(20829.38, 3020.37, 53) == pytest.approx(min(20829.38 / 27, 3020.37))


def test_cache_policies():
    p = CachePolicy.parse("fixed_pool(4096)")
    assert str(p) == "fixed_pool(4096)" and p.tokens_per_block == 4096
    cap = p.kv_capacity_bytes([10_000_000], 1_000_000, [3], 100)
    assert cap[0] == 3 * 100 * 4096                       # m · bytes/token/block · T
    assert CachePolicy.parse("leftover").kv_capacity_bytes([10_000_000], 1_000_000, [3], 100)[0] == 7_000_000
    assert p.kv_capacity_bytes([3_500_000], 1_000_000, [3], 1000)[0] == 500_000   # never above leftover
    with pytest.raises(ValueError):
        CachePolicy.parse("lru")


def test_lemma1_and_blocks_per_hop():
    p = Placement((0, 3, 5, 2), (4, 4, 3, 0), 8)            # s0: 0-3, s1: 3-6, s2: 5-7, s3: nothing
    r = route_from_chain(p, [0, 1, 2])
    assert [(h.first_block, h.last_block) for h in r.hops] == [(0, 3), (4, 6), (7, 7)]
    assert r.blocks == (4, 3, 1)                           # m_ij = a_j + m_j − a_i − m_i
    assert r.to_text() == "s0:0-3|s1:4-6|s2:7-7"
    with pytest.raises(RouteError, match="next block needed is 4"):
        route_from_chain(p, [0, 2])            # block 4 would be skipped
    with pytest.raises(RouteError, match="Lemma 1"):
        route_from_chain(p, [1, 2])                         # s1 does not host block 0
    with pytest.raises(RouteError, match="last block"):
        route_from_chain(p, [0, 1])
    with pytest.raises(RouteError, match="hosts no blocks"):
        route_from_chain(p, [0, 3, 2])
    # a client running blocks 0-4 itself starts the chain at block 5
    assert route_from_chain(p, [2], client_blocks=5).blocks == (3,)


def test_uncovered_blocks_are_named():
    p = Placement((0, 5), (3, 2), 10)
    assert p.uncovered_ranges() == ((3, 4), (7, 9))
    with pytest.raises(PlacementError, match="blocks 3-4, 7-9 uncovered"):
        p.check_covered()
    with pytest.raises(NoFeasibleChain, match="3-4"):
        ChainDAG(p).shortest(HopCost(np.zeros(2), np.zeros(2)))
    with pytest.raises(PlacementError, match="outside"):
        Placement((8,), (4,), 10)


@st.composite
def covered_placements(draw):
    L = draw(st.integers(2, 8))
    n = draw(st.integers(1, 6))
    counts = draw(st.lists(st.integers(0, L), min_size=n, max_size=n))
    starts = [draw(st.integers(0, L - c)) for c in counts]
    p = Placement(tuple(starts), tuple(counts), L)
    client_blocks = draw(st.integers(0, L - 1))
    seed = draw(st.integers(0, 2**32 - 1))
    return p, client_blocks, seed


def _brute_cost(dag, cost, route):
    """Cost of a route recomputed hop by hop (independently of the DP's edge arrays)."""
    total = 0.0
    prev = -1
    for h in route.hops:
        e = next(e for e in range(dag.num_edges)
                 if dag.edge_dst_server[e] == h.server and dag.edge_src_server[e] == prev)
        total += cost.fixed_s[h.server] + cost.per_block_s[h.server] * h.blocks + cost.edge_extra_s[e]
        prev = h.server
    return total + cost.sink_s[route.hops[-1].server]


@settings(max_examples=150, deadline=None)
@given(covered_placements())
def test_shortest_and_k_cheapest_match_enumeration(case):
    p, cb, seed = case
    if p.uncovered_ranges(cb):
        with pytest.raises(NoFeasibleChain):
            ChainDAG(p, cb).shortest(HopCost(np.zeros(p.num_servers), np.zeros(p.num_servers)))
        return
    rng = np.random.default_rng(seed)
    dag = ChainDAG(p, cb)
    n = p.num_servers
    cost = HopCost(rng.random(n), rng.random(n), rng.random(dag.num_edges), rng.random(n))
    chains = dag.all_chains()
    for r in chains:   # every enumerated chain is Lemma-1 feasible
        assert route_from_chain(p, r.servers, cb) == r
    costs = sorted(_brute_cost(dag, cost, r) for r in chains)
    route, best = dag.shortest(cost)
    assert best == pytest.approx(costs[0])
    assert _brute_cost(dag, cost, route) == pytest.approx(best)
    top = dag.k_cheapest(cost, 6)
    assert [c for _, c in top] == pytest.approx(costs[:6])
    assert len({r.servers for r, _ in top}) == len(top)

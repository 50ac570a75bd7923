"""WS-RR (baselines/ws_rr.py) and the core pieces it leans on: ChainDAG.shortest and
ClusterView.waiting_time_s (both optimised for speed; checked here against direct computations)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from distllm_env.api import simulate
from distllm_env.chains import ChainDAG, HopCost
from distllm_env.instance import build_instance
from distllm_env.placement import CachePolicy, Placement, PlacementResult
from distllm_env.policies import family_of, make_routing
from distllm_env.reservations import wait_for
from distllm_env.scenario import load_scenario
from distllm_env.simulator import ClientPart, Simulation
from distllm_env.workload import Request
from distllm_env.baselines.ws_rr import WSRRRouter

TINY_250MB = [f"servers.{j}.memory_gb=0.25" for j in range(4)]


def _two_client_tiny(tiny_dict):
    d = copy.deepcopy(tiny_dict)
    d["clients"] = [{"node": "c0n0"}, {"node": "c1n1"}]
    for s in d["servers"]:
        s["memory_gb"] = 0.25
    return d


def _random_placement(rng, n=4, L=8, max_count=6):
    while True:
        counts = [int(rng.integers(1, max_count + 1)) for _ in range(n)]
        starts = [int(rng.integers(0, L - c + 1)) for c in counts]
        p = Placement(tuple(starts), tuple(counts), L)
        if not p.uncovered_ranges():
            return p


def _requests(rng, n, clients, gap_s, lengths=((20, 32),)):
    out, t = [], 0.0
    for i in range(n):
        l_in, l_out = lengths[int(rng.integers(len(lengths)))]
        out.append(Request(i, int(rng.integers(clients)), t, l_in, l_out))
        t += float(rng.exponential(gap_s))
    return out


def _static_chain_cost(inst, req, route):
    """Σ_hops [t^I_cj + (l−1)·t_cj] + [τ^I_j + (l−1)·τ_j]·m_ij, written out from the instance arrays."""
    c, l1 = req.client, req.output_tokens - 1
    total = 0.0
    for h in route.hops:
        j = h.server
        t_in = inst.rtt_s[c, j] + inst.prefill_overhead_slope_s * req.prompt_tokens + inst.prefill_overhead_intercept_s
        tau_in = inst.prefill_slope_s[j] * req.prompt_tokens + inst.prefill_intercept_s[j]
        total += (t_in + l1 * inst.token_cost_s[c, j]) + (tau_in + l1 * inst.tau_decode_s[j]) * h.blocks
    return total


def _hop_wait(sim, req, server, blocks):
    """t^W of one hop straight from the book's free-bytes profile."""
    need = blocks * sim.instance.model.kv_bytes_per_block(req.prompt_tokens, req.output_tokens)
    return float(wait_for(sim.book.free_profile(server, sim.now_s), np.array([need]))[0])


def test_ws_rr_with_free_memory_picks_least_static_cost_chain(tiny_dict):
    rng = np.random.default_rng(0)
    d = _two_client_tiny(tiny_dict)
    for trial in range(15):
        inst = build_instance(load_scenario(d), 0)
        placement = _random_placement(rng)
        reqs = [Request(0, int(rng.integers(2)), 0.0, int(rng.integers(1, 40)), int(rng.integers(1, 64)))]
        sim = Simulation(inst, PlacementResult(placement), reqs, reservation="published", backoff=False)
        req = sim.next_request()
        route = WSRRRouter().route(req, sim.view, rng)
        costs = [_static_chain_cost(inst, req, ch) for ch in sim.view.feasible_dag(req.client).all_chains()]
        assert _static_chain_cost(inst, req, route) == pytest.approx(min(costs), rel=1e-12)


@pytest.mark.parametrize("reservation", ["published", "calendar"])
def test_ws_rr_is_argmin_of_static_plus_summed_waits_under_load(tiny_dict, reservation):
    # a 300-token pool per block holds only a few sessions, so requests wait; two clients, mixed lengths
    rng = np.random.default_rng(4)
    inst = build_instance(load_scenario(_two_client_tiny(tiny_dict)), 0)
    waited = 0
    for trial in range(4):
        placement = _random_placement(rng)
        reqs = _requests(rng, 25, 2, 0.3, lengths=((20, 32), (10, 16), (5, 40)))
        sim = Simulation(inst, PlacementResult(placement, CachePolicy("fixed_pool", 300)), reqs,
                         reservation=reservation, backoff=False)
        router = WSRRRouter()
        while (req := sim.next_request()) is not None:
            route = router.route(req, sim.view, rng)

            def full(ch):
                return _static_chain_cost(inst, req, ch) + sum(_hop_wait(sim, req, h.server, h.blocks)
                                                               for h in ch.hops)
            best = min(full(ch) for ch in sim.view.feasible_dag(req.client).all_chains())
            assert full(route) == pytest.approx(best, rel=1e-12)
            waited += full(route) > _static_chain_cost(inst, req, route) + 1e-9
            sim.commit(req, route)
    assert waited > 0


def test_ws_rr_waiting_makes_it_leave_the_statically_best_chain():
    # s0 hosts all 8 blocks; s2 [0,4) and s3 [4,8).  Statically s0 alone is cheapest (one hop instead of two).
    # Fill s0's KV memory with 8-block sessions; the next request then waits on s0 until the first of
    # them completes (one release frees all it needs) — long enough to prefer s2→s3.
    inst = build_instance(load_scenario("tiny", TINY_250MB), 0)
    placement = Placement((0, 0, 0, 4), (8, 0, 4, 4), 8)
    reqs = [Request(i, 0, i * 1e-3, 20, 32) for i in range(60)]
    sim = Simulation(inst, PlacementResult(placement), reqs, reservation="published", backoff=False)
    router = WSRRRouter()
    req = sim.next_request()
    dag = sim.view.feasible_dag(0)
    chains = {ch.servers: ch for ch in dag.all_chains()}
    assert _static_chain_cost(inst, req, chains[(0,)]) < _static_chain_cost(inst, req, chains[(2, 3)])
    assert router.route(req, sim.view, None).servers == (0,)
    kv8 = 8 * sim.view.kv_bytes_per_block(req)
    while sim.view.free_bytes(0) >= kv8:
        sim.commit(req, chains[(0,)])
        req = sim.next_request()
    first_release = min(r.completion_s for r in sim.records if r is not None)
    wait_s0 = sim.view.waiting_time_s(req, dag)[(dag.edge_dst_server == 0) & (dag.edge_src_server == -1)]
    assert wait_s0 == pytest.approx([first_release - sim.now_s])
    assert first_release - sim.now_s > (_static_chain_cost(inst, req, chains[(2, 3)])
                                        - _static_chain_cost(inst, req, chains[(0,)]))
    assert router.route(req, sim.view, None).servers == (2, 3)


def test_ws_rr_honours_client_blocks():
    inst = build_instance(load_scenario("tiny", TINY_250MB), 0)
    placement = Placement((0, 0, 0, 4), (8, 0, 4, 4), 8)
    sim = Simulation(inst, PlacementResult(placement), [Request(0, 0, 0.0, 20, 32)], reservation="published",
                     backoff=False)
    sim.next_request()
    req = sim.apply_split(ClientPart(blocks=6, prefill_s=0.01, per_token_s=0.001))
    route = WSRRRouter().route(req, sim.view, None)
    assert route.hops[0].first_block == 6 and route.hops[-1].last_block == 7
    assert sim.commit(req, route).status == "completed"


def test_ws_rr_never_fits_returns_static_route_and_simulator_rejects():
    inst = build_instance(load_scenario("tiny", TINY_250MB), 0)
    placement = Placement((0, 0, 0, 4), (8, 0, 4, 4), 8)
    # a 10-token pool per block can never hold a 52-token session
    sim = Simulation(inst, PlacementResult(placement, CachePolicy("fixed_pool", 10)), [Request(0, 0, 0.0, 20, 32)],
                     reservation="published", backoff=False)
    req = sim.next_request()
    assert np.all(np.isinf(sim.view.waiting_time_s(req)))
    route = WSRRRouter().route(req, sim.view, None)
    assert route.servers == (0,)
    rec = sim.commit(req, route)
    assert (rec.status, rec.reason) == ("rejected", "insufficient_memory")


# -- the optimised core pieces -----------------------------------------------------------------------------

@pytest.mark.parametrize("reservation", ["published", "calendar"])
def test_waiting_time_fast_path_equals_the_direct_profile_computation(reservation):
    rng = np.random.default_rng(9)
    inst = build_instance(load_scenario("tiny", TINY_250MB), 0)
    checked = nonzero = 0
    for trial in range(5):
        placement = _random_placement(rng)
        reqs = _requests(rng, 30, 1, 0.2, lengths=((20, 32), (5, 8)))
        sim = Simulation(inst, PlacementResult(placement, CachePolicy("fixed_pool", 200)), reqs,
                         reservation=reservation, backoff=True)
        while (req := sim.next_request()) is not None:
            dag = sim.view.feasible_dag(0)
            got = sim.view.waiting_time_s(req, dag)
            need = dag.edge_blocks * sim.view.kv_bytes_per_block(req)
            want = np.array([wait_for(sim.book.free_profile(int(dag.edge_dst_server[e]), sim.now_s),
                                      np.array([need[e]]))[0] for e in range(dag.num_edges)])
            np.testing.assert_array_equal(got, want)
            checked += 1
            nonzero += bool(np.any(want > 0))
            chains = dag.all_chains()
            sim.commit(req, chains[int(rng.integers(len(chains)))])
    assert checked == 150 and nonzero > 10


def test_shortest_equals_brute_force_and_k_cheapest():
    rng = np.random.default_rng(21)
    for trial in range(200):
        n, L = int(rng.integers(1, 7)), int(rng.integers(1, 9))
        counts = [int(rng.integers(0, L + 1)) for _ in range(n)]
        starts = [int(rng.integers(0, L - c + 1)) if c else 0 for c in counts]
        placement = Placement(tuple(starts), tuple(counts), L)
        client_blocks = int(rng.integers(0, L))
        dag = ChainDAG(placement, client_blocks)
        chains = dag.all_chains()
        fixed, per_block = rng.random(n), rng.random(n)
        extra = np.where(rng.random(dag.num_edges) < 0.2, np.inf, rng.random(dag.num_edges))
        sink = rng.random(n)
        cost = HopCost(fixed, per_block, extra, sink)
        edge = {(int(a), int(b)): e for e, (a, b) in enumerate(zip(dag.edge_src_server, dag.edge_dst_server))}

        def value(route):
            v, prev = 0.0, -1
            for h in route.hops:
                v += fixed[h.server] + per_block[h.server] * h.blocks + extra[edge[(prev, h.server)]]
                prev = h.server
            return v + sink[prev]
        finite = [value(ch) for ch in chains if np.isfinite(value(ch))]
        if not finite:
            with pytest.raises(Exception):
                dag.shortest(cost)
            continue
        route, c = dag.shortest(cost)
        assert c == pytest.approx(min(finite)) and value(route) == pytest.approx(c)
        assert dag.k_cheapest(cost, 1)[0][1] == pytest.approx(c)


def test_ws_rr_registered_and_multi_client_simulation_runs():
    r = make_routing("ws-rr")
    assert (r.name, r.family) == ("ws-rr", "proposed") and family_of("cg-bp", "ws-rr") == "proposed"
    res = simulate("petals-swarm", "cg-bp", "ws-rr", seed=0, overrides=["workload.num_requests=60"])
    assert res.summary["num_completed"] == 60
    assert {rec.client for rec in res.records} == {0, 1, 2}
    assert all(rec.route.hops[0].first_block == 0 for rec in res.records)

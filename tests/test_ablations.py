"""Ablation baselines: Optimized Order, Optimized Number, Optimized RR (baselines/ablations.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from distllm_env.api import simulate
from distllm_env.chains import ChainDAG, HopCost
from distllm_env.errors import NoFeasibleChain
from distllm_env.instance import build_instance
from distllm_env.offline import OfflineProblem
from distllm_env.placement import CachePolicy, Placement, PlacementResult
from distllm_env.policies import family_of, make_placement, make_routing
from distllm_env.reservations import wait_for
from distllm_env.scenario import load_scenario
from distllm_env.simulator import ClientPart, Simulation
from distllm_env.workload import Request
from distllm_env.baselines.ablations import (OptimizedNumberPlacement, OptimizedOrderPlacement, OptimizedRouter,
                                            min_sum_plus_max_wait)
from distllm_env.baselines.cg_bp import choose_sessions, conservative_counts, tilde_order
from distllm_env.baselines.petals import PetalsPlacement, petals_counts, petals_join, server_throughputs
from distllm_env.baselines.ws_rr import WSRRRouter


def _edge_index(dag):
    return {(int(a), int(b)): e for e, (a, b) in enumerate(zip(dag.edge_src_server, dag.edge_dst_server))}


def _objective(route, static: HopCost, wait, sink, edge):
    """Σ_edges static weight + max_edges t^W + sink cost, written out per chain."""
    total, worst, prev = 0.0, 0.0, -1
    for h in route.hops:
        e = edge[(prev, h.server)]
        total += static.fixed_s[h.server] + static.per_block_s[h.server] * h.blocks
        worst = max(worst, wait[e])
        prev = h.server
    return total + worst + sink[prev]


def test_min_sum_plus_max_wait_equals_brute_force_on_random_dags():
    rng = np.random.default_rng(5)
    solved = 0
    for trial in range(300):
        n, L = int(rng.integers(1, 7)), int(rng.integers(1, 9))
        counts = [int(rng.integers(0, L + 1)) for _ in range(n)]
        starts = [int(rng.integers(0, L - c + 1)) if c else 0 for c in counts]
        dag = ChainDAG(Placement(tuple(starts), tuple(counts), L), int(rng.integers(0, L)))
        static = HopCost(rng.random(n), rng.random(n))
        # waits: many zeros, a few shared values (ties), some never-fitting edges
        wait = rng.choice([0.0, 0.0, 0.3, 0.7, 1.5, np.inf], size=dag.num_edges) * rng.choice([1.0, 2.0])
        sink = np.full(n, 1e-3)
        edge = _edge_index(dag)
        values = [_objective(ch, static, wait, sink, edge) for ch in dag.all_chains()]
        values = [v for v in values if np.isfinite(v)]
        if not values:
            with pytest.raises(NoFeasibleChain):
                min_sum_plus_max_wait(dag, static, wait, sink)
            continue
        route, best, theta = min_sum_plus_max_wait(dag, static, wait, sink)
        assert best == pytest.approx(min(values), rel=1e-12)
        assert _objective(route, static, wait, sink, edge) == pytest.approx(best, rel=1e-12)
        solved += 1
    assert solved > 100


def _two_client_tiny(tiny_dict):
    d = copy.deepcopy(tiny_dict)
    d["clients"] = [{"node": "c0n0"}, {"node": "c2n1"}]
    for s in d["servers"]:
        s["memory_gb"] = 0.25
    return d


def test_opt_rr_in_simulation_is_per_request_optimal_and_never_worse_than_ws_rr(tiny_dict):
    rng = np.random.default_rng(8)
    inst = build_instance(load_scenario(_two_client_tiny(tiny_dict)), 0)
    waited = 0
    for trial in range(4):
        while True:
            counts = [int(rng.integers(1, 7)) for _ in range(4)]
            placement = Placement(tuple(int(rng.integers(0, 8 - c + 1)) for c in counts), tuple(counts), 8)
            if not placement.uncovered_ranges():
                break
        t, reqs = 0.0, []
        for i in range(25):
            reqs.append(Request(i, int(rng.integers(2)), t, 20, 32))
            t += float(rng.exponential(0.3))
        sim = Simulation(inst, PlacementResult(placement, CachePolicy("fixed_pool", 300)), reqs,
                         reservation="published", backoff=False)
        opt, ws = OptimizedRouter(), WSRRRouter()
        while (req := sim.next_request()) is not None:
            dag = sim.view.feasible_dag(req.client)
            static = sim.view.static_cost(req)
            kv = sim.view.kv_bytes_per_block(req)
            wait = np.array([wait_for(sim.book.free_profile(int(dag.edge_dst_server[e]), sim.now_s),
                                      np.array([dag.edge_blocks[e] * kv]))[0] for e in range(dag.num_edges)])
            sink, edge = np.full(4, 1e-3), _edge_index(dag)
            route = opt.route(req, sim.view, rng)
            values = [_objective(ch, static, wait, sink, edge) for ch in dag.all_chains()]
            mine = _objective(route, static, wait, sink, edge)
            assert mine == pytest.approx(min(values), rel=1e-12)
            assert mine <= _objective(ws.route(req, sim.view, rng), static, wait, sink, edge) + 1e-9
            waited += bool(np.any(wait > 0))
            sim.commit(req, route)
    assert waited > 0


def test_opt_rr_honours_client_blocks():
    inst = build_instance(load_scenario("tiny", [f"servers.{j}.memory_gb=0.25" for j in range(4)]), 0)
    sim = Simulation(inst, PlacementResult(Placement((0, 0, 0, 4), (8, 0, 4, 4), 8)), [Request(0, 0, 0.0, 20, 32)],
                     reservation="published", backoff=False)
    sim.next_request()
    req = sim.apply_split(ClientPart(blocks=3))
    route = OptimizedRouter().route(req, sim.view, None)
    assert route.hops[0].first_block == 3 and route.hops[-1].last_block == 7
    assert sim.commit(req, route).status == "completed"


def test_opt_order_joins_in_cg_bp_order_with_petals_counts():
    inst = build_instance(load_scenario("paper-abovenet"), 2)
    res = OptimizedOrderPlacement().place(inst, np.random.default_rng(0))
    R = choose_sessions(inst)
    _, _, order = tilde_order(OfflineProblem.from_instance(inst, 1), R)
    assert res.diagnostics["join_order"] == order.tolist() and res.diagnostics["sessions"] == R
    counts = petals_counts(inst)
    assert list(res.placement.counts) == counts
    expected = petals_join(inst.num_blocks, counts, server_throughputs(inst, counts), order.tolist())
    assert list(res.placement.starts) == [s if c else 0 for s, c in zip(expected, counts)]
    assert str(res.cache_policy) == "fixed_pool(4096)"
    # the order is by increasing t̃: A100s (t̃ ≈ τ + t/m with m ≈ 40–60) before MIG slices
    t_tilde = np.array(res.diagnostics["t_tilde_s"])
    assert np.all(np.diff(t_tilde[order]) >= 0)


def test_opt_number_uses_cg_bp_counts_petals_order_and_leftover_cache():
    inst = build_instance(load_scenario("paper-abovenet"), 1)
    res = OptimizedNumberPlacement().place(inst, np.random.default_rng(3))
    petals = PetalsPlacement().place(inst, np.random.default_rng(3))
    assert res.diagnostics["join_order"] == petals.diagnostics["join_order"]      # same random order
    R = choose_sessions(inst)
    assert list(res.placement.counts) == conservative_counts(inst, R).tolist()
    assert str(res.cache_policy) == "leftover"
    assert not res.placement.uncovered_ranges()
    # fixed sessions option
    assert list(OptimizedNumberPlacement(sessions=3).place(inst, np.random.default_rng(3)).placement.counts) == \
        conservative_counts(inst, 3).tolist()


def test_ablation_registration_families_and_presets_run():
    for name, cls in (("opt-order", OptimizedOrderPlacement), ("opt-number", OptimizedNumberPlacement)):
        pol = make_placement(name)
        assert isinstance(pol, cls) and pol.family == "petals"
    assert isinstance(make_routing("opt-rr"), OptimizedRouter)
    assert family_of("petals", "opt-rr") == family_of("opt-order", "petals") == family_of("opt-number", "petals") \
        == "petals"
    for placement, routing in (("opt-order", "petals"), ("opt-number", "petals"), ("petals", "opt-rr")):
        res = simulate("paper-clustered", placement, routing, seed=0,
                       overrides=["workload.num_requests=25", "workload.arrival_rate_per_s=0.1"])
        assert res.summary["num_completed"] == 25 and res.family == "petals"
        assert min(r.completion_s - r.arrival_s for r in res.records) > 250   # petals-family delay

"""Tests of the BPRR MILP (three formulations), the routing-only ILP (19), the stand-alone bound and
exhaustive search.  Costs compared here are the decode-phase path cost l_max·Σ_r Σ_hops
(t_cj + τ_j·m_ij) of the offline problem, not the simulator's end-to-end per-token time."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distllm_env import load_scenario, simulate
from distllm_env.chains import ChainDAG, HopCost
from distllm_env.errors import NoFeasibleChain, PlacementError, SolverTimeout
from distllm_env.instance import build_instance
from distllm_env.offline import OfflineProblem
from distllm_env.placement import Placement
from distllm_env.policies import make_placement, make_routing

from distllm_env.baselines.exhaustive import solve_exhaustive, solve_exhaustive_routing
from distllm_env.baselines.milp import (BPRRInfeasible, MILPPlacement, RoutingILPRouter, solve_bprr,
                                        solve_routing_ilp, split_sessions)
from distllm_env.baselines.milp_arcflow import ArcFlowModel
from distllm_env.baselines.milp_bounds import chain_potentials, standalone_bound, standalone_chain
from distllm_env.baselines.milp_link import LinkModel


def random_problem(seed: int) -> OfflineProblem:
    """A random tiny instance: ≤ 3 servers with L ≤ 6, or 4 servers with L ≤ 4; 1–2 clients; 1–3
    requests; memory often binding (integers in toy units: s_m = 10, s_c ∈ 1..3)."""
    rng = np.random.default_rng(seed)
    if rng.random() < 0.7:
        N, L = int(rng.integers(2, 4)), int(rng.integers(2, 7))
    else:
        N, L = 4, int(rng.integers(2, 5))
    C = int(rng.integers(1, 3))
    req = np.zeros(C, dtype=int)
    for _ in range(int(rng.integers(1, 4))):
        req[rng.integers(C)] += 1
    s_m, s_c = 10, int(rng.integers(1, 4))
    mem = s_m * rng.integers(1, L + 1, size=N) + s_c * rng.integers(1, 2 * L + 1, size=N)
    caps = np.where(rng.random(N) < 0.5, L, rng.integers(1, L + 1, size=N))
    return OfflineProblem(num_blocks=L, block_bytes=s_m, kv_block_bytes=s_c, memory_bytes=mem, max_blocks=caps,
                          tau_s=rng.uniform(0.001, 0.03, size=N), token_cost_s=rng.uniform(0.01, 0.2, size=(C, N)),
                          requests=req, output_tokens=int(rng.integers(1, 20)))


def hand_problem(requests: int) -> OfflineProblem:
    """L = 4; server 0: M = 45, t = 0.1; server 1: M = 25, t = 0.05; τ = 0.01; s_m = 10, s_c = 1;
    l_max = 10.  One request: server 0 alone (0.1 + 4·0.01 = 0.14/token).  Two requests: server 0
    cannot hold all 4 blocks and two sessions (40 + 8 > 45), so both take a two-hop chain
    (0.05 + 0.1 + 4·0.01 = 0.19/token), 2·0.19·10 = 3.8 — while the stand-alone bound is 2.8."""
    return OfflineProblem(num_blocks=4, block_bytes=10, kv_block_bytes=1, memory_bytes=[45, 25], max_blocks=[4, 4],
                          tau_s=[0.01, 0.01], token_cost_s=[[0.1, 0.05]], requests=[requests], output_tokens=10)


@pytest.fixture(scope="module")
def clustered_instance():
    return build_instance(load_scenario("paper-clustered"), 0)


def _close(a, b, rel=1e-7):
    return abs(a - b) <= rel * max(1.0, abs(b))


# -- exactness against exhaustive search ------------------------------------------------------------

EXACT_SEEDS = list(range(40))


def _exhaustive_or_none(p):
    try:
        return solve_exhaustive(p)
    except PlacementError:
        return None


def test_arcflow_equals_exhaustive_on_random_tiny_instances():
    t0 = time.perf_counter()
    compared = binding = 0
    for seed in EXACT_SEEDS:
        p = random_problem(seed)
        ex = _exhaustive_or_none(p)
        for ws in (False, True):       # without warm start: the full model; with: the pruned one
            if ex is None:
                with pytest.raises(BPRRInfeasible):
                    solve_bprr(p, "arcflow", warm_start=ws)
                continue
            sol = solve_bprr(p, "arcflow", warm_start=ws, time_limit_s=30)
            assert sol.proven_optimal, seed
            assert p.is_feasible(sol.placement, sol.routes)
            assert _close(sol.objective_s, ex.objective_s), (seed, ws, sol.objective_s, ex.objective_s)
            assert sol.bound_s <= ex.objective_s * (1 + 1e-9)
        if ex is not None:
            compared += 1
            binding += ex.objective_s > standalone_bound(p)[0] * (1 + 1e-9)
    assert compared >= 20
    assert binding >= 8                 # memory makes the joint optimum exceed the stand-alone bound
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("formulation", ["rlt", "literal"])
def test_link_formulations_equal_exhaustive(formulation):
    # the published model and its RLT strengthening, without warm start (the model alone decides)
    seeds = [5, 6, 7, 11, 15, 21, 24, 28, 29]     # 6 of them memory-binding
    for seed in seeds:
        p = random_problem(seed)
        ex = solve_exhaustive(p)
        sol = solve_bprr(p, formulation, warm_start=False, time_limit_s=30)
        assert sol.solver_status == "optimal", (seed, sol.solver_status)
        assert p.is_feasible(sol.placement, sol.routes)
        assert _close(sol.objective_s, ex.objective_s), (seed, sol.objective_s, ex.objective_s)


def test_hand_computed_instance_all_formulations():
    one = hand_problem(1)
    assert standalone_bound(one)[0] == pytest.approx(1.4)
    assert solve_exhaustive(one).objective_s == pytest.approx(1.4)
    two = hand_problem(2)
    assert standalone_bound(two)[0] == pytest.approx(2.8)
    assert solve_exhaustive(two).objective_s == pytest.approx(3.8)
    for f in ("arcflow", "rlt", "literal"):
        s1 = solve_bprr(one, f, warm_start=False)
        assert s1.objective_s == pytest.approx(1.4)
        assert s1.routes[0][1].servers == (0,)
        s2 = solve_bprr(two, f, warm_start=False)
        assert s2.objective_s == pytest.approx(3.8)
        assert s2.proven_optimal and s2.proof == "solver"
        assert all(len(r) == 2 for _, r in s2.routes)
        assert s2.bound_s == pytest.approx(3.8, rel=1e-4)


def test_exhaustive_pruning_does_not_change_the_optimum():
    for seed in (4, 7, 21, 28, 33):
        p = random_problem(seed)
        a, b = solve_exhaustive(p, prune=True), solve_exhaustive(p, prune=False)
        assert a.objective_s == pytest.approx(b.objective_s)
        assert b.placements_examined >= a.placements_examined


def test_literal_lp_bound_is_weak_and_rlt_is_not(clustered_instance):
    # LP relaxations: the published McCormick model lets the "processed blocks" α+γ−β−δ go negative;
    # the RLT rows force Σ_hops m_ij = L and m_ij·f ≥ f per request, so the RLT bound is at least
    # Σ_r (min_j t_cj + L·min_j τ_j) = 2·(0.05 + 4·0.01) per token here
    p = hand_problem(2)
    lit = LinkModel(p, "literal").model.solve(relax=True)
    rlt = LinkModel(p, "rlt").model.solve(relax=True)
    arc = ArcFlowModel(p, standalone_per_token_s=[0.14]).model.solve(relax=True)
    assert lit.status == rlt.status == arc.status == "optimal"
    assert lit.objective < 2 * (0.05 + 4 * 0.01) - 1e-3
    assert rlt.objective >= 2 * (0.05 + 4 * 0.01) - 1e-9
    assert arc.objective >= 2 * 0.14 - 1e-9               # the stand-alone rows
    assert max(lit.objective, rlt.objective, arc.objective) <= 0.38 + 1e-9   # all below the optimum
    # on the paper's 9-server instance the published LP bound is below zero
    big = OfflineProblem.from_instance(clustered_instance, 3)
    assert LinkModel(big, "literal").model.solve(relax=True).objective < 0
    assert LinkModel(big, "rlt").model.solve(relax=True).objective > 3 * (0.15 + 70 * 0.0032197) - 1e-6


# -- stand-alone bound --------------------------------------------------------------------------------

def test_standalone_bound_equals_exhaustive_for_one_request_and_bounds_the_rest():
    for seed in EXACT_SEEDS[:25]:
        p = random_problem(seed)
        ex = _exhaustive_or_none(p)
        lb, chains = standalone_bound(p)
        if ex is None:
            continue
        assert lb <= ex.objective_s * (1 + 1e-9)
        for c in range(p.num_clients):
            single = OfflineProblem(p.num_blocks, p.block_bytes, p.kv_block_bytes, p.memory_bytes, p.max_blocks,
                                    p.tau_s, p.token_cost_s[[c]], [1], p.output_tokens)
            one = _exhaustive_or_none(single)
            if one is not None:
                assert p.output_tokens * chains[c].cost_per_token_s == pytest.approx(one.objective_s)


def test_standalone_dp_uses_each_server_once():
    # server 0 is cheap but holds only 2 blocks: a DP over positions alone would use it twice
    # (0.024/token); a real chain is server 0 then server 2 (0.01 + 0.002 + 0.2 + 0.002 = 0.214)
    p = OfflineProblem(num_blocks=4, block_bytes=10, kv_block_bytes=1, memory_bytes=[22, 44, 22],
                       max_blocks=[4, 4, 4], tau_s=[0.001, 0.001, 0.001], token_cost_s=[[0.01, 0.5, 0.2]],
                       requests=[1], output_tokens=1)
    ch = standalone_chain(p, 0)
    assert ch.cost_per_token_s == pytest.approx(0.214)
    assert sorted(h[0] for h in ch.hops) == [0, 2]
    assert [h[1:] for h in ch.hops] in ([(0, 1), (2, 3)],)      # contiguous, covering 0..3
    assert solve_exhaustive(p).objective_s == pytest.approx(0.214)
    fwd, bwd = chain_potentials(p, 0)
    assert fwd[4] == pytest.approx(0.214) and bwd[0] == pytest.approx(0.214) and fwd[0] == bwd[4] == 0
    assert fwd[2] == pytest.approx(0.012)                        # server 0 alone covers two blocks
    # three servers that can each take 1 block cannot cover L = 4 blocks: no chain at all
    q = OfflineProblem(num_blocks=4, block_bytes=10, kv_block_bytes=1, memory_bytes=[11, 11, 11],
                       max_blocks=[4, 4, 4], tau_s=[0.001] * 3, token_cost_s=[[0.1] * 3], requests=[1],
                       output_tokens=1)
    assert standalone_chain(q, 0).cost_per_token_s == np.inf
    with pytest.raises(BPRRInfeasible, match="at most 3 of the 4 blocks"):
        solve_bprr(q)


# -- infeasibility, time-outs ---------------------------------------------------------------------------

def test_client_without_any_chain_is_named():
    p = OfflineProblem(num_blocks=3, block_bytes=10, kv_block_bytes=2, memory_bytes=[11, 40], max_blocks=[3, 3],
                       tau_s=[0.01, 0.01], token_cost_s=[[0.1, 0.1], [0.1, np.inf]], requests=[1, 1],
                       output_tokens=4)
    with pytest.raises(BPRRInfeasible) as err:
        solve_bprr(p)
    assert err.value.cause == "no_chain" and err.value.client == 1
    assert "client 1" in str(err.value)
    assert isinstance(err.value, PlacementError)


@pytest.mark.parametrize("formulation", ["arcflow", "rlt", "literal"])
def test_memory_infeasible_instance_raises(formulation):
    # one server, L = 2: 2 blocks (20) + one session (2) fit in 22, two sessions do not
    p = OfflineProblem(num_blocks=2, block_bytes=10, kv_block_bytes=1, memory_bytes=[22], max_blocks=[2],
                       tau_s=[0.01], token_cost_s=[[0.1]], requests=[2], output_tokens=4)
    with pytest.raises(PlacementError):
        solve_exhaustive(p)
    with pytest.raises(BPRRInfeasible) as err:
        solve_bprr(p, formulation)
    assert err.value.cause == "memory"
    assert "memory" in str(err.value)


def test_time_out_returns_flagged_incumbent_or_raises_in_strict_mode(clustered_instance):
    # 150 requests: memory binds and CG-BPRR is far from the stand-alone bound; 0.5 s is not enough
    p = OfflineProblem.from_instance(clustered_instance, 150)
    sol = solve_bprr(p, "arcflow", time_limit_s=0.5)
    assert not sol.proven_optimal and sol.status != "optimal"
    assert sol.gap > 0.01 and sol.bound_s < sol.objective_s
    assert p.is_feasible(sol.placement, sol.routes)
    assert sol.diagnostics()["gap"] == sol.gap
    with pytest.raises(SolverTimeout) as err:
        solve_bprr(p, "arcflow", time_limit_s=0.5, strict=True)
    assert err.value.incumbent is not None and err.value.gap == pytest.approx(err.value.incumbent.gap)


def test_paper_clustered_three_requests_proven_fast(clustered_instance):
    p = OfflineProblem.from_instance(clustered_instance, 3)
    sol = solve_bprr(p, "arcflow", time_limit_s=60)
    assert sol.proven_optimal and sol.gap <= 1e-4
    # two A100 hops cover the model: 2·0.15 s + 70·3.2197 ms per token, ×128 tokens, ×3 requests
    assert sol.objective_s == pytest.approx(3 * 128 * (2 * 0.15 + 70 * 0.0032197))
    assert sol.solve_time_s < 30


def test_bad_arguments_raise_naming_the_field():
    p = hand_problem(1)
    with pytest.raises(ValueError, match="formulation"):
        solve_bprr(p, "gurobi")
    with pytest.raises(ValueError, match="time_limit_s"):
        solve_bprr(p, time_limit_s=0)
    with pytest.raises(ValueError, match="sessions"):
        MILPPlacement(sessions=0)
    with pytest.raises(ValueError, match="method"):
        RoutingILPRouter(method="simplex")


# -- CG-BPRR against the MILP and Theorem 2 -------------------------------------------------------------

cg_bp = pytest.importorskip("distllm_env.baselines.cg_bp")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000))
def test_cg_bprr_never_beats_milp_and_respects_theorem2(seed):
    p = random_problem(seed)
    try:
        sol, routes, obj = cg_bp.cg_bprr(p, p.total_requests)
    except PlacementError:
        return                                   # CG-BP infeasible for this |R| (Corollary 1 fails)
    assert p.is_feasible(sol.placement, routes)
    opt = solve_bprr(p, "arcflow", warm_start=False, time_limit_s=30)
    assert opt.proven_optimal
    assert obj >= opt.objective_s * (1 - 1e-9)
    avg_per_token = obj / (p.output_tokens * p.total_requests)
    assert avg_per_token <= sol.bound_per_token_s * (1 + 1e-9) + 1e-12


# -- routing-only ILP (19) ----------------------------------------------------------------------------

def test_routing_ilp_equals_enumeration_under_fixed_placements():
    checked = 0
    for seed in range(60):
        p = random_problem(seed)
        ex = _exhaustive_or_none(p)
        if ex is None:
            continue
        # the optimal placement, and the same placement with every hosted range shrunk by nothing
        routes, obj = solve_exhaustive_routing(p, ex.placement)
        assert obj == pytest.approx(ex.objective_s)
        sol = solve_routing_ilp(p, ex.placement)
        assert sol.proven_optimal
        assert sol.objective_s == pytest.approx(obj)
        assert p.is_feasible(ex.placement, sol.routes)
        checked += 1
        if checked >= 12:
            break
    assert checked >= 12


def test_routing_ilp_reports_memory_infeasibility_and_uncovered_blocks():
    p = hand_problem(2)
    full = Placement((0, 0), (4, 0), 4)        # server 0 alone: 40 + 2·4 > 45
    with pytest.raises(NoFeasibleChain, match="memory"):
        solve_routing_ilp(p, full)
    gap = Placement((0, 0), (2, 0), 4)
    with pytest.raises(NoFeasibleChain, match="2-3"):
        solve_routing_ilp(p, gap)
    # with ample memory every request takes its client's shortest chain
    one = hand_problem(1)
    sol = solve_routing_ilp(one, full)
    dag = ChainDAG(full)
    _, best = dag.shortest(HopCost(np.array([0.1, 0.05]), np.array([0.01, 0.01])))
    assert sol.objective_s == pytest.approx(10 * best)


# -- policies -----------------------------------------------------------------------------------------

def test_milp_placement_policy_in_simulation():
    res = simulate("tiny", placement=make_placement("milp", options={"sessions": 4}), routing="shortest", seed=0)
    diag = res.placement_result.diagnostics
    for key in ("status", "objective_s", "bound_s", "gap", "proven_optimal", "formulation", "solve_time_s"):
        assert key in diag
    assert diag["proven_optimal"] and diag["formulation"] == "arcflow"
    assert not res.placement_result.placement.uncovered_ranges()
    assert str(res.placement_result.cache_policy) == "leftover"
    assert MILPPlacement.family == "proposed" and MILPPlacement.name == "milp"
    assert all(r.completed for r in res.records)


def test_split_sessions_by_weight_with_one_each():
    inst = build_instance(load_scenario("paper-bellcanada", overrides=["clients.count=3"]), 0)
    assert split_sessions(inst, 10) == [4, 3, 3]
    assert sum(split_sessions(inst, 7)) == 7
    with pytest.raises(ValueError, match="sessions"):
        split_sessions(inst, 2)


class _BothMethods:
    """Routes with rr-ilp's DAG method and checks, at every decision, that HiGHS solving (19) for
    the same request and view finds a chain of the same decode cost."""

    name, family = "rr-ilp-check", "default"

    def __init__(self):
        self.dag, self.ilp = RoutingILPRouter("dag"), RoutingILPRouter("ilp")
        self.decisions = 0

    def route(self, request, view, rng):
        a, b = self.dag.route(request, view, rng), self.ilp.route(request, view, rng)
        dag = view.feasible_dag(request.client)
        wait = view.waiting_time_s(request, dag)

        def cost(route):
            return sum(view.token_cost_s[request.client, h.server] + view.tau_decode_s[h.server] * h.blocks
                       for h in route.hops)

        def worst_wait(route):   # t^W depends only on the edge's server and its block count
            return max(wait[(dag.edge_dst_server == h.server) & (dag.edge_blocks == h.blocks)][0] for h in route.hops)

        assert cost(a) == pytest.approx(cost(b), abs=1e-12)
        assert worst_wait(a) == pytest.approx(worst_wait(b))
        self.decisions += 1
        return a


def test_rr_ilp_router_dag_and_ilp_methods_agree_and_pick_cheapest_chain_when_free():
    sc = load_scenario("tiny")
    a = simulate(sc, placement="even", routing=make_routing("rr-ilp"), seed=1)
    # the first request finds every server free: it takes the least decode-cost chain
    first = a.records[0]
    inst = a.instance
    dag = ChainDAG(a.placement_result.placement)
    _, best = dag.shortest(HopCost(inst.token_cost_s[first.client], inst.tau_decode_s))
    assert a.instance.token_cost_s[0, list(first.route.servers)].sum() + sum(
        inst.tau_decode_s[h.server] * h.blocks for h in first.route.hops) == pytest.approx(best)
    # under load (requests must wait for memory) both ways of solving (19) agree decision by decision
    busy = load_scenario("tiny", overrides=["workload.arrival_rate_per_s=50"])
    checker = _BothMethods()
    res = simulate(busy, placement=make_placement("even", options={"sessions": 1}), routing=checker, seed=1)
    assert checker.decisions == len(res.records)
    assert sum(r.wait_s > 0 for r in res.records) >= 10      # the fallback (earliest θ) was exercised
    assert all(r.completed for r in res.records)

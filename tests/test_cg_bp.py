"""CG-BP / CG-BPRR, Theorem 2, Corollary 1, R_max and the |R| rule (baselines/cg_bp.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distllm_env.api import simulate
from distllm_env.chains import ChainDAG
from distllm_env.errors import PlacementError, ScenarioError
from distllm_env.instance import build_instance, round_half_up
from distllm_env.offline import OfflineProblem
from distllm_env.policies import family_of, make_placement
from distllm_env.scenario import load_scenario
from distllm_env.baselines.cg_bp import (CGBPPlacement, cg_bp, cg_bprr, choose_sessions, corollary1_feasible,
                                         lone_request_time_s, r_max, sessions_rule)


def _problem(memory, tau, token_cost, requests=(1,), L=4, s_m=10, s_c=1, caps=None, l_max=10):
    n = len(memory)
    return OfflineProblem(num_blocks=L, block_bytes=s_m, kv_block_bytes=s_c, memory_bytes=np.array(memory),
                          max_blocks=np.array(caps if caps is not None else [L] * n), tau_s=np.array(tau),
                          token_cost_s=np.atleast_2d(token_cost), requests=np.array(requests), output_tokens=l_max)


# -- hand-computed instances ----------------------------------------------------------------------------

def test_cg_bp_hand_computed():
    # L = 4, s_m = 10, s_c = 1, |R| = 2.  m = min(⌊M/12⌋, 4) = [4, 2, 2, 0]; κ = ⌊(M − 10m)/m⌋ = [2, 2, 5, 0];
    # t̃ = τ + t/m = [0.11, 0.07, 0.155, inf] → order [1, 0, 2, 3]; t0 = 1.155.
    # server 1 (2 blocks): every window under-served, equal ΣT → start 0; T[0:2] = 2.31 − 1.085·2 = 0.14
    # server 0 (4 blocks): the only window, start 0 → C = [4,4,2,2], every block covered → K = 2
    # server 2 (2 blocks): sorted capacities (4,4), (2,4), (2,2) → lexicographic minimum at start 2
    p = _problem([50, 25, 30, 11], [0.01, 0.02, 0.005, 0.001], [0.4, 0.1, 0.3, 0.05], requests=[2])
    sol = cg_bp(p, 2)
    assert list(sol.counts) == [4, 2, 2, 0]
    assert list(sol.kappa) == [2, 2, 5, 0]
    assert sol.t_tilde[:3] == pytest.approx([0.11, 0.07, 0.155]) and math.isinf(sol.t_tilde[3])
    assert sol.order == (1, 0, 2, 3)
    assert sol.placement.starts == (0, 0, 2, 0) and sol.placement.counts == (4, 2, 2, 0)
    assert sol.K == 2 and sol.first_k == (1, 0)
    assert list(sol.capacity) == [4, 4, 7, 7]
    # Theorem 2: 0.07·2 + 0.11·4 − τ_0·(6 − 4) = 0.58 − 0.02
    assert sol.bound_per_token_s == pytest.approx(0.56)
    # CG-BPRR: chains s0 (0.4 + 0.04 = 0.44), s1→s2 (0.14 + 0.31 = 0.45), s1→s0 (0.14 + 0.4 + 0.02·… = 0.56)
    sol2, routes, obj = cg_bprr(p)
    assert sol2.sessions == 2 and [r.servers for _, r in routes] == [(0,), (0,)]
    assert obj == pytest.approx(10 * 2 * 0.44)


def test_cg_bp_greedy_prefers_windows_with_most_unserved_demand():
    # three identical 2-block servers on L = 5 (|R| = 1): [0,2), then the full-demand window [2,4)
    # (not [1,3), which overlaps served block 1), then the only window holding block 4: [3,5)
    p = _problem([24, 24, 24], [0.01] * 3, [0.1] * 3, L=5)
    sol = cg_bp(p, 1)
    assert sol.placement.starts == (0, 2, 3) and sol.K == 3
    with pytest.raises(PlacementError, match=r"blocks 4 stay under-served") as exc:
        cg_bp(_problem([24, 24], [0.01] * 2, [0.1] * 2, L=5), 1)
    assert exc.value.uncovered == ((4, 4),)


def test_cg_bp_no_server_fits_names_all_blocks():
    with pytest.raises(PlacementError, match="0-3") as exc:
        cg_bp(_problem([11, 11], [0.01] * 2, [0.1] * 2), 2)
    assert exc.value.uncovered == ((0, 3),)


def test_cg_bp_respects_gpu_caps():
    p = _problem([1000, 1000], [0.01] * 2, [0.1] * 2, L=4, caps=[2, 3])
    sol = cg_bp(p, 1)
    assert list(sol.counts) == [2, 3]


# -- an independent, literal re-implementation (pure Python) -----------------------------------------------

def _naive_cg_bp(p: OfflineProblem, R: int):
    L, s_m, s_c = p.num_blocks, p.block_bytes, p.kv_block_bytes
    n = p.num_servers
    m = [min(int(p.memory_bytes[j]) // (s_m + s_c * R), L, int(p.max_blocks[j])) for j in range(n)]
    tt = [float(p.tau_s[j]) + max(p.token_cost_s[:, j]) / m[j] if m[j] else math.inf for j in range(n)]
    kap = [(int(p.memory_bytes[j]) - s_m * m[j]) // (s_c * m[j]) if m[j] else 0 for j in range(n)]
    order = sorted(range(n), key=lambda j: (tt[j], j))
    t0 = max(x for x in tt if x < math.inf) + 1
    C, T, a = [0] * L, [R * t0] * L, [0] * n
    for j in order:
        if not m[j]:
            continue
        if any(c < R for c in C):
            best = -1.0
            for s in range(L - m[j] + 1):
                if any(C[b] < R for b in range(s, s + m[j])) and sum(T[s:s + m[j]]) > best:
                    best, a[j] = sum(T[s:s + m[j]]), s
        else:
            a[j] = min(range(L - m[j] + 1), key=lambda s: (sorted(C[s:s + m[j]]), s))
        for b in range(a[j], a[j] + m[j]):
            T[b] -= (t0 - tt[j]) * min(max(R - C[b], 0), kap[j])
            C[b] += kap[j]
    return a, m, all(c >= R for c in C)


@st.composite
def offline_problems(draw):
    n = draw(st.integers(1, 6))
    L = draw(st.integers(1, 8))
    s_m, s_c = 10, draw(st.integers(1, 3))
    memory = draw(st.lists(st.integers(0, 120), min_size=n, max_size=n))
    caps = draw(st.lists(st.integers(1, L), min_size=n, max_size=n))
    tau = draw(st.lists(st.sampled_from([0.001, 0.002, 0.005, 0.01]), min_size=n, max_size=n))
    C = draw(st.integers(1, 3))
    tc = np.array(draw(st.lists(st.sampled_from([0.05, 0.1, 0.15, 0.2]), min_size=n * C, max_size=n * C))).reshape(C, n)
    req = draw(st.lists(st.integers(0, 2), min_size=C, max_size=C))
    if sum(req) == 0:
        req[0] = 1
    return OfflineProblem(num_blocks=L, block_bytes=s_m, kv_block_bytes=s_c, memory_bytes=np.array(memory),
                          max_blocks=np.array(caps), tau_s=np.array(tau), token_cost_s=tc, requests=np.array(req),
                          output_tokens=16)


@settings(max_examples=150, deadline=None)
@given(offline_problems(), st.integers(1, 4))
def test_cg_bp_properties_on_random_instances(p, R):
    feasible = corollary1_feasible(p, R)
    a, m, naive_ok = _naive_cg_bp(p, R) if any(
        min(int(p.memory_bytes[j]) // (p.block_bytes + p.kv_block_bytes * R), p.max_blocks[j]) for j in
        range(p.num_servers)) else (None, None, False)
    assert naive_ok == feasible                       # Corollary 1 ⇔ CG-BP covers every block |R| times
    if not feasible:
        with pytest.raises(PlacementError):
            cg_bp(p, R)
        return
    sol = cg_bp(p, R)
    assert list(sol.placement.starts) == [a[j] if m[j] else 0 for j in range(p.num_servers)]
    assert list(sol.placement.counts) == m
    hosting = sol.counts > 0
    assert np.all(sol.kappa[hosting] >= R)           # κ_j ≥ |R| by construction
    assert np.all(sol.capacity >= R)
    # conservative: weights plus |R| sessions through every hosted block fit in memory
    assert np.all(p.block_bytes * sol.counts + p.kv_block_bytes * R * sol.counts <= p.memory_bytes)
    assert not sol.placement.uncovered_ranges()
    # K: the first K servers of the order cover every block, K−1 do not
    cov = np.zeros(p.num_blocks, dtype=int)
    for k, j in enumerate(sol.order):
        if sol.counts[j]:
            cov[sol.placement.starts[j]:sol.placement.starts[j] + sol.counts[j]] += 1
        if cov.min() > 0:
            assert k + 1 == sol.K
            break
    # Theorem 2: every client's CG-BPRR chain costs at most the bound per token
    sol2, routes, obj = cg_bprr(p, R)
    dag = ChainDAG(sol2.placement)
    for c, route in routes:
        assert p.chain_cost_s(route, c) <= sol2.bound_per_token_s + 1e-12
        assert p.chain_cost_s(route, c) == pytest.approx(min(p.chain_cost_s(ch, c) for ch in dag.all_chains()))
    assert obj == pytest.approx(p.output_tokens * sum(p.chain_cost_s(r, c) for c, r in routes))
    assert len(routes) == p.total_requests
    if R >= p.total_requests:
        assert p.is_feasible(sol2.placement, routes)  # memory never binds under the conservative counts


# -- Corollary 1, R_max, the |R| rule ----------------------------------------------------------------------

def test_r_max_and_corollary1_hand_computed():
    p = _problem([50, 25, 30, 11], [0.01] * 4, [0.1] * 4)
    # ⌊(116 − 10·(4 + 4)) / (1·(4 + 4))⌋ = ⌊36/8⌋ = 4
    assert r_max(p) == 4
    # |R| = 4: ⌊M/14⌋ = [3, 1, 2, 0] → 6 ≥ 4; |R| = 20: ⌊M/30⌋ = [1, 0, 1, 0] → 2 < 4
    assert corollary1_feasible(p, 4) and not corollary1_feasible(p, 20)


def _paper_clustered(*overrides):
    return build_instance(load_scenario("paper-clustered", list(overrides)), 0)


def test_lone_request_time_hand_computed_paper_clustered():
    # |R| = 1: A100s host min(⌊86.13e9/(s_m + s_c)⌋, 70) = 64 blocks, t̃_A100 = 3.2197 ms + 0.15/64 is the
    # smallest → s0 [0,64), s1 [6,70); the lone request runs s0 (64 blocks) then s1 (6 blocks).
    # prefill: Σ [0.1 + 0.055 + m·(0.0743e-3·20 + 0.03299)]; decode: 127·Σ [0.15 + m·3.2197e-3];
    # plus 0.1 s initial delay and the 60 s allocation delay of the proposed family
    inst = _paper_clustered()
    tau_in = 0.0743e-3 * 20 + 0.03299
    prefill = (0.155 + 64 * tau_in) + (0.155 + 6 * tau_in)
    decode = 127 * ((0.15 + 64 * 3.2197e-3) + (0.15 + 6 * 3.2197e-3))
    assert lone_request_time_s(inst, 60.0) == pytest.approx(prefill + decode + 0.1 + 60.0)
    assert lone_request_time_s(inst, 0.0) == pytest.approx(prefill + decode + 0.1)


def test_sessions_rule_paper_clustered():
    inst = _paper_clustered("workload.arrival_rate_per_s=0.1")
    t1 = lone_request_time_s(inst, 60.0)
    rule = sessions_rule(inst)
    assert rule.t1_s == pytest.approx(t1) and rule.allocation_delay_s == 60.0
    x = 0.1 * t1
    assert rule.raw == round_half_up(x + math.sqrt(x)) == 17
    s_m, s_c = inst.block_bytes, inst.kv_block_bytes
    assert rule.r_max == (2 * 86_130_000_000 + 7 * 9_100_000_000 - s_m * 79) // (s_c * 79)
    assert rule.sessions == 17 == choose_sessions(inst)
    assert choose_sessions(inst, arrival_rate_per_s=0.5) == round_half_up(0.5 * t1 + math.sqrt(0.5 * t1))


def test_sessions_rule_lowers_until_corollary1_holds():
    # MIG slices with 40 GB keep their 4-block cap, so R_max (which ignores caps) overshoots: at λ = 10/s the
    # raw value is capped at R_max and then lowered to the largest |R| satisfying Corollary 1
    inst = _paper_clustered(*[f"servers.{j}.memory_gb=40" for j in range(2, 9)], "workload.arrival_rate_per_s=10")
    rule = sessions_rule(inst)
    assert rule.raw > rule.r_max
    R = rule.sessions
    assert rule.corollary1_lowered == rule.r_max - R > 0
    assert corollary1_feasible(inst, R) and not corollary1_feasible(inst, R + 1)


def test_sessions_rule_infeasible_instance_raises():
    with pytest.raises(PlacementError):
        sessions_rule(build_instance(load_scenario("tiny", [f"servers.{j}.memory_gb=0.03" for j in range(4)]), 0))


# -- the placement policy ------------------------------------------------------------------------------------

def test_cg_bp_placement_policy_diagnostics_and_cache():
    inst = _paper_clustered("workload.arrival_rate_per_s=0.1")
    res = CGBPPlacement().place(inst, np.random.default_rng(0))
    d = res.diagnostics
    assert str(res.cache_policy) == "leftover"
    assert d["sessions"] == 17 and d["corollary1"] is True and d["sessions_rule"] == "auto"
    sol = cg_bp(OfflineProblem.from_instance(inst, 1), 17)
    assert res.placement == sol.placement
    assert d["K"] == sol.K and d["theorem2_bound_per_token_s"] == pytest.approx(sol.bound_per_token_s)
    fixed = CGBPPlacement(sessions=5).place(inst, None)
    assert fixed.diagnostics["sessions"] == 5 and fixed.diagnostics["sessions_rule"] == "given"
    # the λ option overrides the scenario's rate in the rule (Table III's λ = 0.5 column)
    assert CGBPPlacement(arrival_rate_per_s=0.5).place(inst, None).diagnostics["sessions"] == \
        choose_sessions(inst, arrival_rate_per_s=0.5)


def test_cg_bp_options_and_registration():
    with pytest.raises(ScenarioError, match="sessions"):
        CGBPPlacement(sessions=0)
    with pytest.raises(ScenarioError, match="sessions"):
        CGBPPlacement(sessions="many")
    with pytest.raises(ScenarioError, match="arrival_rate_per_s"):
        CGBPPlacement(arrival_rate_per_s=-1)
    pol = make_placement("cg-bp")
    assert (pol.name, pol.family) == ("cg-bp", "proposed")
    assert family_of("cg-bp", "ws-rr") == "proposed"


def test_simulate_proposed_paper_clustered_no_waiting_at_low_load():
    res = simulate("paper-clustered", "cg-bp", "ws-rr", seed=0,
                   overrides=["workload.arrival_rate_per_s=0.1", "workload.num_requests=40"])
    assert res.summary["num_completed"] == 40
    # every request pays the 60 s allocation delay of the proposed family and nothing waits at λ = 0.1
    assert min(r.completion_s - r.arrival_s for r in res.records) > 60
    assert res.summary["wait_mean_s"] == 0.0

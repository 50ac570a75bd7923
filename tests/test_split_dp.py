"""SplitLLM split policies: the DP against exhaustive search, the greedy baselines, a hand-computed case,
the SLA guarantee, the fallback and the RL masking table."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from distllm_env.baselines.splitllm import (DPSplit, ExhaustiveSplit, PrefixGreedySplit, RatioGreedySplit,
                                            ServerOnlySplit, budget, dp_tables, make_split_policy, solve_dp)
from distllm_env.errors import PolicyLoadError, ScenarioError
from distllm_env.split.profile import CLIENT, SERVER, LayerProfile, meets_sla


def random_profile(rng: np.random.Generator, L: int) -> LayerProfile:
    """Heterogeneous layers: client 1-20× slower than the server, sometimes unable to run a layer,
    boundary transfers from negligible to dominant, some zero-work layers."""
    ts = rng.uniform(0.01, 1.0, L)
    tc = ts * rng.uniform(1.0, 20.0, L)
    tc[rng.random(L) < 0.1] = np.inf
    w = rng.uniform(0, 10, L) * (rng.random(L) > 0.1)
    up = rng.exponential(1.0, L + 1) * rng.choice([0.01, 1.0, 5.0], L + 1)
    down = rng.exponential(1.0, L + 1) * rng.choice([0.01, 1.0, 5.0], L + 1)
    return LayerProfile(tc, ts, w, up, down)


def random_sla(rng, p: LayerProfile) -> float:
    return p.latency_s(np.zeros(p.num_layers, np.int8)) * rng.uniform(0.9, 4.0)


# -- hand-computed 3-layer case ------------------------------------------------------------------------
# Integer times and δ = 1 s, so rounded and continuous times coincide.  Latencies by hand
# (S = server, C = client; input and output at the client):
#   SSS 5 (W 60)  CSS 11 (W 50)  SCS 10 (W 40)  SSC 6 (W 30)
#   CCS 9 (W 30)  CSC 12 (W 20)  SCC 9 (W 10)   CCC 8 (W 0)
HAND = LayerProfile(client_time_s=[2, 4, 2], server_time_s=[1, 1, 1], server_work_flops=[10, 20, 30],
                    up_s=[1, 6, 1, 0], down_s=[0, 1, 1, 1])
HAND_LATENCY = {"SSS": 5, "CSS": 11, "SCS": 10, "SSC": 6, "CCS": 9, "CSC": 12, "SCC": 9, "CCC": 8}
HAND_WORK = {"SSS": 60, "CSS": 50, "SCS": 40, "SSC": 30, "CCS": 30, "CSC": 20, "SCC": 10, "CCC": 0}


def _x(text: str) -> np.ndarray:
    return np.array([1 if ch == "C" else 0 for ch in text], np.int8)


def test_hand_case_latency_and_work_of_every_placement():
    for text, lat in HAND_LATENCY.items():
        assert HAND.latency_s(_x(text)) == pytest.approx(lat)
        assert HAND.server_work(_x(text)) == pytest.approx(HAND_WORK[text])
        assert int(HAND.units(_x(text)[None, :], 1.0, 100)[0]) == lat


@pytest.mark.parametrize("sla, expected", [(7, "SSC"), (8, "CCC"), (9, "CCC"), (5, "SSS"), (6, "SSC")])
def test_hand_case_dp(sla, expected):
    plan = solve_dp(HAND, sla, delta_s=1.0)
    assert "".join("C" if v else "S" for v in plan.x) == expected
    assert plan.server_work_flops == HAND_WORK[expected]
    assert plan.latency_s == HAND_LATENCY[expected] and plan.feasible and plan.fallback is None
    assert plan.rounded_units == HAND_LATENCY[expected]


def test_hand_case_greedies_at_sla_8():
    # prefix greedy: SSS (5) fits, CSS (11) does not -> stops at no client layer
    pg = PrefixGreedySplit().split(None, HAND, 8.0)
    assert pg.server_work_flops == 60 and pg.client_layers == 0
    # ratio greedy: from SSS only SSC fits (+1 s, saves 30); from SSC nothing fits (CSC 12, SCC 9)
    rg = RatioGreedySplit().split(None, HAND, 8.0)
    assert "".join("C" if v else "S" for v in rg.x) == "SSC" and rg.server_work_flops == 30
    assert solve_dp(HAND, 8.0, delta_s=1.0).server_work_flops == 0
    assert ServerOnlySplit().split(None, HAND, 8.0).server_work_flops == 60


def test_hand_case_infeasible_sla_falls_back_to_server_only():
    for policy in (DPSplit(delta_s=1.0), PrefixGreedySplit(), RatioGreedySplit(), ExhaustiveSplit(delta_s=1.0),
                   ServerOnlySplit()):
        plan = policy.split(None, HAND, 4.0)   # even SSS takes 5 s
        assert not plan.feasible and plan.fallback == "server-only"
        assert plan.client_layers == 0 and plan.server_work_flops == 60 and plan.latency_s == 5
        assert "SLA" in plan.reason


def test_dp_tie_break_prefers_least_time():
    # SSC and CCS both have work 30; at SLA 9 CCC (work 0) wins, at SLA 7.5 (J = 7) only SSC/SSS fit
    plan = solve_dp(HAND, 7.5, delta_s=1.0)
    assert plan.server_work_flops == 30 and plan.latency_s == 6   # SSC (6 s), not CCS (9 s)


# -- DP = exhaustive search over the same δ-rounded times -----------------------------------------------
def test_dp_equals_exhaustive_on_random_instances():
    rng = np.random.default_rng(20241014)
    checked = 0
    for trial in range(130):
        L = int(rng.integers(1, 17))
        p = random_profile(rng, L)
        sla = random_sla(rng, p)
        steps = int(rng.choice([7, 50, 300, 1000]))
        dp = solve_dp(p, sla, budget_steps=steps)
        ex = ExhaustiveSplit(budget_steps=steps).split(None, p, sla)
        assert (dp.fallback is None) == (ex.fallback is None), trial
        assert dp.server_work_flops == pytest.approx(ex.server_work_flops, rel=1e-12, abs=1e-12), trial
        if dp.fallback is None:
            assert dp.rounded_units <= budget(sla, None, steps)[1]
            assert meets_sla(dp.latency_s, sla)
            # DP reports the least rounded time among optimal placements, exhaustive does the same
            assert dp.rounded_units == ex.rounded_units, trial
            checked += 1
    assert checked >= 100


def test_dp_never_worse_than_greedy_on_the_same_rounded_budget_and_never_violates():
    rng = np.random.default_rng(7)
    compared = 0
    for trial in range(150):
        L = int(rng.integers(1, 40))
        p = random_profile(rng, L)
        sla = random_sla(rng, p)
        delta, J = budget(sla, None, 1000)
        dp = solve_dp(p, sla)
        if dp.fallback is None:
            assert dp.latency_s <= sla * (1 + 1e-9) and dp.rounded_units <= J
        for cls in (PrefixGreedySplit, RatioGreedySplit):
            # greedy run on the rounded times and budget: DP is at least as good
            g = cls(rounded=True).split(None, p, sla)
            if g.fallback is None:
                assert g.rounded_units <= J
                assert dp.server_work_flops <= g.server_work_flops * (1 + 1e-12) + 1e-12, (trial, cls)
                compared += 1
            # greedy on continuous times, judged on the same rounded budget
            gc = cls().split(None, p, sla)
            if gc.fallback is None:
                assert meets_sla(gc.latency_s, sla)
                if p.units(gc.x[None, :], delta, J)[0] <= J:
                    assert dp.server_work_flops <= gc.server_work_flops * (1 + 1e-12) + 1e-12, (trial, cls)
    assert compared >= 100


def test_finer_delta_never_hurts_much_and_coarse_delta_is_conservative():
    rng = np.random.default_rng(3)
    for _ in range(30):
        p = random_profile(rng, 12)
        sla = random_sla(rng, p)
        exact = ExhaustiveSplit(rounded=False).split(None, p, sla)
        for steps in (10, 100, 2000):
            dp = solve_dp(p, sla, budget_steps=steps)
            # rounding only removes placements, so DP never beats the continuous optimum
            assert dp.server_work_flops >= exact.server_work_flops - 1e-9
            if dp.fallback is None:
                assert meets_sla(dp.latency_s, sla)


# -- tables for RL masking -------------------------------------------------------------------------------
def _reachable_by_brute_force(p: LayerProfile, delta: float, J: int, prefix: tuple[int, ...]) -> bool:
    L = p.num_layers
    rest = L - len(prefix)
    for tail in itertools.product((0, 1), repeat=rest):
        x = np.array(prefix + tail, np.int8)
        if p.units(x[None, :], delta, J)[0] <= J:
            return True
    return False


def test_action_mask_is_exact_against_brute_force():
    rng = np.random.default_rng(11)
    for _ in range(25):
        L = int(rng.integers(1, 8))
        p = random_profile(rng, L)
        sla = random_sla(rng, p)
        t = dp_tables(p, sla, budget_steps=60)
        assert t.feasible == _reachable_by_brute_force(p, t.delta_s, t.budget_units, ())
        for prefix_len in range(L):
            for prefix in itertools.product((0, 1), repeat=prefix_len):
                x = np.array(prefix, np.int64)
                prev = CLIENT if prefix_len == 0 else int(x[-1])
                locs = np.concatenate([[CLIENT], x]).astype(np.int64)
                used = int(sum(t.step_units[k, locs[k], locs[k + 1]] for k in range(prefix_len)))
                mask = t.action_mask(prefix_len, prev, used)
                for b in (SERVER, CLIENT):
                    assert bool(mask[b]) == _reachable_by_brute_force(p, t.delta_s, t.budget_units, prefix + (b,))


def test_following_the_mask_always_finishes_within_the_sla():
    rng = np.random.default_rng(5)
    for _ in range(40):
        L = int(rng.integers(1, 30))
        p = random_profile(rng, L)
        sla = random_sla(rng, p)
        t = dp_tables(p, sla)
        if not t.feasible:
            assert not t.action_mask(0, CLIENT, 0).any()
            continue
        prev, used, x = CLIENT, 0, []
        for k in range(L):
            mask = t.action_mask(k, prev, used)
            assert mask.any()
            b = int(rng.choice(np.flatnonzero(mask)))
            used += int(t.step_units[k, prev, b])
            x.append(b)
            prev = b
        used += int(t.final_units[prev])
        assert used <= t.budget_units
        assert meets_sla(p.latency_s(np.array(x)), sla)


def test_min_units_to_go_matches_least_rounded_time():
    rng = np.random.default_rng(2)
    for _ in range(20):
        L = int(rng.integers(1, 10))
        p = random_profile(rng, L)
        sla = random_sla(rng, p)
        t = dp_tables(p, sla, budget_steps=100)
        X = ((np.arange(1 << L)[:, None] >> np.arange(L)) & 1).astype(np.int8)
        # same (capped) step units on both sides, so the table's entry is the brute-force minimum
        assert t.min_units_to_go[0, CLIENT] == int(p.units(X, t.delta_s, t.budget_units).min())


# -- validation and registry ------------------------------------------------------------------------------
def test_bad_inputs_raise_naming_the_field():
    with pytest.raises(ScenarioError, match="sla_s"):
        solve_dp(HAND, -1.0)
    with pytest.raises(ScenarioError, match="delta_s"):
        solve_dp(HAND, 5.0, delta_s=0.0)
    with pytest.raises(ScenarioError, match="budget_steps"):
        DPSplit(budget_steps=0)
    with pytest.raises(ScenarioError, match="up_s"):
        LayerProfile([1, 1], [1, 1], [1, 1], [0, 0], [0, 0, 0])
    with pytest.raises(ScenarioError, match="server_time_s"):
        LayerProfile([1], [-1], [1], [0, 0], [0, 0])
    with pytest.raises(ScenarioError, match="layer"):
        dp_tables(HAND, 8.0, delta_s=1.0).action_mask(3, CLIENT, 0)
    with pytest.raises(ScenarioError, match="x"):
        HAND.latency_s([1, 0])
    with pytest.raises(ScenarioError, match="exhaustive"):
        ExhaustiveSplit().split(None, LayerProfile(*(np.ones(23),) * 3, np.ones(24), np.ones(24)), 100.0)


def test_registry_builds_policies_and_rejects_unknown_names():
    for name in ("dp", "prefix-greedy", "ratio-greedy", "server-only", "exhaustive"):
        pol = make_split_policy(name, budget_steps=200)
        assert pol.name == name and pol.budget_steps == 200
    assert make_split_policy("distllm_env.baselines.splitllm:DPSplit").name == "dp"
    with pytest.raises(PolicyLoadError):
        make_split_policy("no-such-policy")
    with pytest.raises(PolicyLoadError):
        make_split_policy(object())

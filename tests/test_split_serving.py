"""The FIFO server of the split serving evaluation, and the evaluation that feeds it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distllm_env.errors import ScenarioError
from distllm_env.split.evaluate import evaluate_split
from distllm_env.split.serving import fifo_waits, sustainable_rate, unit_gaps, waits_at_rate


def _lindley_loop(arrival, service):
    waits, free_at = [], 0.0
    for a, s in zip(arrival, service):
        start = max(a, free_at)
        waits.append(start - a)
        free_at = start + s
    return np.array(waits)


def test_fifo_waits_by_hand():
    # arrivals 0, 1, 2, 10; services 3, 3, 1, 1: request 1 waits 2, request 2 waits 4 (server busy until 7)
    assert fifo_waits([0, 1, 2, 10], [3, 3, 1, 1]).tolist() == [0, 2, 4, 0]
    assert fifo_waits([], []).size == 0


def test_fifo_waits_match_an_event_loop():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 300))
        a = np.cumsum(rng.exponential(1.0, n))
        s = rng.exponential(rng.uniform(0.2, 2.0), n)
        np.testing.assert_allclose(fifo_waits(a, s), _lindley_loop(a, s), atol=1e-9)


def test_fifo_input_checks():
    with pytest.raises(ScenarioError, match="arrival_s"):
        fifo_waits([1, 0], [1, 1])
    with pytest.raises(ScenarioError, match="service_s"):
        fifo_waits([0, 1], [1, -1])


def test_sustainable_rate_is_the_largest_passing_grid_point():
    rng = np.random.default_rng(1)
    gaps = unit_gaps(rng, 2000)
    assert gaps[0] == 0
    service = rng.exponential(0.01, 2000)
    sla = 0.05
    lam = sustainable_rate(service, sla, gaps, base_per_s=1.0, factor=1.1)
    k = round(math.log(lam) / math.log(1.1))
    assert lam == pytest.approx(1.1 ** k)

    def ok(rate):
        return rate * service.mean() < 1 and waits_at_rate(rate, gaps, service).mean() < sla

    assert ok(lam) and not ok(lam * 1.1)
    # brute-force scan of the grid agrees (monotone in λ under common random numbers)
    passing = [1.1 ** j for j in range(-50, 80) if ok(1.1 ** j)]
    assert max(passing) == pytest.approx(lam)
    # halving every service time raises the sustainable rate
    assert sustainable_rate(service / 2, sla, gaps) > lam


def test_sustainable_rate_needs_a_stable_server_and_handles_idle_servers():
    gaps = unit_gaps(np.random.default_rng(2), 2000)
    service = np.full(2000, 1e-4)          # n·E[S]/2 = 0.1 s < SLA: the wait test alone never fails
    lam = sustainable_rate(service, 1.0, gaps)
    assert lam * 1e-4 < 1 <= lam * 1.1 * 1e-4
    assert sustainable_rate(np.zeros(10), 1.0, gaps[:10]) == math.inf
    # a base rate already too high is searched downwards
    assert sustainable_rate(np.full(2000, 0.5), 0.2, gaps, base_per_s=100.0) < 2.0


def test_evaluation_on_a_small_stream():
    ev = evaluate_split("splitllm-edge", seed=1, num_requests=150)
    rows = {r["policy"]: r for r in ev.rows}
    assert set(rows) == {"server-only", "prefix-greedy", "ratio-greedy", "dp"}
    assert rows["server-only"]["server_work_reduction_mean"] == 0
    for r in rows.values():
        assert r["sla_violations"] == 0 and r["infeasible_sla"] == 0
    # every plan meets its own SLA and the server-only baseline is the request's full work
    for name, plans in ev.plans.items():
        for p, sla, base in zip(plans, ev.sla_s, ev.server_only_work):
            assert p.latency_s <= sla * (1 + 1e-9) and p.server_work_flops <= base * (1 + 1e-12)
    # reductions are consistent with the per-request plans
    w = ev.work("dp")
    assert rows["dp"]["server_work_reduction_total"] == pytest.approx(1 - w.sum() / ev.server_only_work.sum())
    assert rows["dp"]["mean_server_work_gflops"] == pytest.approx(w.mean() / 1e9)
    # less server work ⇒ a higher (or equal) sustainable rate on the same arrivals
    assert rows["dp"]["sustainable_rate_per_s"] >= rows["server-only"]["sustainable_rate_per_s"]
    assert set(ev.gains) == {"dp_vs_prefix-greedy", "dp_vs_ratio-greedy"}
    assert {f["family"] for f in ev.families} == {"transformer", "bert", "gpt2", "vit"}
    assert sum(d["requests"] for d in ev.devices) == 150
    # seeded: the same seed gives the same requests and plans
    ev2 = evaluate_split("splitllm-edge", policies=["dp"], seed=1, num_requests=150)
    assert [r.model for r in ev2.requests] == [r.model for r in ev.requests]
    np.testing.assert_array_equal(ev2.work("dp"), w)


def test_infeasible_fixed_sla_is_reported_not_hidden():
    ev = evaluate_split("splitllm-edge", policies=["dp"], seed=0, num_requests=40,
                        overrides=["split.sla={rule: fixed, ms: 1}"])
    rows = {r["policy"]: r for r in ev.rows}
    plans = ev.plans["dp"]
    fallbacks = [p for p in plans if p.fallback is not None]
    # 1 ms is below every network round trip: only all-client plans of tiny requests can fit
    assert rows["dp"]["infeasible_sla"] == len(fallbacks) >= 30 and rows["dp"]["sla_violations"] == 0
    for p in plans:
        if p.fallback:
            assert p.fallback == "server-only" and not p.feasible and p.client_layers == 0 and "SLA" in p.reason
        else:
            assert p.latency_s <= 1e-3 and p.client_layers == p.x.size

"""Per-server FCFS admission of the live engine (distllm_env/live/admission.py, docs/model.md §11),
the view's queue-aware predicted waits (docs/contracts.md §8), the run meta's ``admission`` key, and
churn arrivals that wait out an outage (docs/model.md §12)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from distllm_env import simulate
from distllm_env.backoff import backoff_instant_s
from distllm_env.chains import Hop, Route
from distllm_env.live.admission import next_open_attempt
from distllm_env.live.engine import LiveSimulation
from distllm_env.placement import Placement
from distllm_env.workload import Request

from live_helpers import instance_and_placement, tiny_spec

#: tiny's 8 blocks twice: servers 0, 2 host blocks 0–3 and servers 1, 3 blocks 4–7
REPLICAS = Placement(starts=(0, 4, 0, 4), counts=(4, 4, 4, 4), num_blocks=8)
# 0.11 GB GPUs: 8,192,000 KV bytes per server; tiny's KV is 4,096 bytes per token per block, so a
# 4-block hop holds 16,384 bytes per token: 500 tokens (prompt + declared output) per server
TOKENS_PER_SERVER = 500


def _sim(backoff=False):
    inst, presult = instance_and_placement(tiny_spec(memory_gb=0.11, server_model="serial", backoff=backoff),
                                           REPLICAS)
    return inst, presult


def _route(a, b):
    return Route((Hop(a, 0, 3), Hop(b, 4, 7)))


def _run(sim, routes):
    while (req := sim.next_request()) is not None:
        sim.commit(req, routes[req.id])
    return sim.finished_records()


def test_capacity_assumption_of_these_tests():
    inst, presult = _sim()
    sim = LiveSimulation(inst, presult, [], server_model="serial")
    assert all(int(c) == TOKENS_PER_SERVER * 4 * inst.model.kv_bytes_per_block(1, 0) for c in sim.capacity_bytes)
    assert inst.model.kv_bytes_per_block(1, 0) == 4096


def test_sessions_on_disjoint_servers_do_not_block_each_other_and_shared_servers_stay_fifo():
    inst, presult = _sim()
    reqs = [Request(0, 0, 0.0, 290, 10),     # 300 tokens on servers 0, 1
            Request(1, 0, 0.1, 290, 10),     # 300 tokens on 0, 1: waits for request 0's end
            Request(2, 0, 0.2, 290, 10),     # 300 tokens on 2, 3: disjoint, admitted at once
            Request(3, 0, 0.3, 90, 10)]      # 100 tokens on 0, 3: fits now, but request 1 waits on server 0
    routes = {0: _route(0, 1), 1: _route(0, 1), 2: _route(2, 3), 3: _route(0, 3)}
    recs = _run(LiveSimulation(inst, presult, reqs, server_model="serial", backoff=False), routes)
    assert all(r.completed for r in recs)
    assert recs[0].start_s == 0.0
    assert recs[2].start_s == 0.2                       # a global FIFO queue held it until request 0 ended
    assert recs[1].start_s == recs[0].completion_s      # 300 + 300 > 500 tokens on servers 0 and 1
    # no overtaking on server 0: admitted together with request 1 (300 + 100 ≤ 500 on server 0,
    # 300 + 100 ≤ 500 on server 3)
    assert recs[3].start_s == recs[1].start_s


def test_backoff_admits_at_the_sessions_own_retry_instant():
    inst, presult = _sim(backoff=True)
    reqs = [Request(0, 0, 0.0, 290, 10), Request(1, 0, 0.1, 290, 10), Request(2, 0, 0.2, 290, 10)]
    routes = {0: _route(0, 1), 1: _route(0, 1), 2: _route(2, 3)}
    recs = _run(LiveSimulation(inst, presult, reqs, server_model="serial", backoff=True), routes)
    assert recs[2].start_s == 0.2
    end0 = recs[0].completion_s
    k = next(k for k in range(100) if 0.1 + backoff_instant_s(k) >= end0)
    assert recs[1].start_s == 0.1 + backoff_instant_s(k) > end0


def test_predicted_wait_counts_the_sessions_queued_ahead():
    """Two 200-token sessions fill servers 0 and 1 (2 × 200 ≤ 500 < 3 × 200); a third queues.  A new
    200-token session would fit after the FIRST predicted release without the queue; behind the queued
    one it waits for the LAST (docs/contracts.md §8)."""
    inst, presult = _sim()
    reqs = [Request(0, 0, 0.0, 100, 100), Request(1, 0, 0.01, 198, 2), Request(2, 0, 0.02, 100, 100),
            Request(3, 0, 0.03, 100, 100)]
    sim = LiveSimulation(inst, presult, reqs, server_model="serial", backoff=False)
    for _ in range(3):
        req = sim.next_request()
        sim.commit(req, _route(0, 1))
    req = sim.next_request()
    assert req.id == 3 and sim.sessions[2].state == 0            # request 2 waits (WAITING)
    now = sim.now_s
    end_long, end_short = sim.sessions[0].predicted_end_s(now), sim.sessions[1].predicted_end_s(now)
    assert end_short < end_long
    out = sim.evaluate(req, _route(0, 1))
    assert out.start_s == end_long
    need = np.array([4 * inst.model.kv_bytes_per_block(100, 100)])
    assert sim.book.wait_s(0, now, need)[0] == pytest.approx(end_long - now)      # what ws-rr's waits read
    assert sim.book.stays_free_bytes(0, now) == 0
    assert out.start_s == sim.evaluate(req, _route(0, 3)).start_s   # server 0 alone decides it
    assert sim.evaluate(req, _route(2, 3)).start_s == now           # idle servers: no wait
    sim.commit(req, _route(0, 1))
    recs = _run(sim, {})
    assert all(r.completed for r in recs)
    assert recs[2].start_s <= recs[3].start_s                        # FIFO on the shared servers


def test_live_runs_report_per_server_fifo_admission_not_the_reservation():
    live = simulate("tiny", seed=0, overrides=["simulator.server_model=serial", "simulator.reservation=published"])
    assert (live.meta["admission"], live.meta["reservation"]) == ("per-server-fifo", None)
    analytic = simulate("tiny", seed=0, overrides=["simulator.reservation=published"])
    assert (analytic.meta["admission"], analytic.meta["reservation"]) == ("published", "published")


def test_next_open_attempt_follows_the_petals_backoff_and_gives_up_after_the_timeout():
    assert next_open_attempt(10.0, 10.0, 0, 1800.0) == (1, 11.0)
    assert next_open_attempt(10.0, 17.0, 1, 1800.0) == (4, 25.0)          # instants 0, 1, 3, 7, 15 s
    # capped at 60 s after 63 s: the k-th instant is 63 + 60 (k − 6) s, so 1743 s (k = 34), then 1803 s
    assert next_open_attempt(0.0, 1700.0, 0, 1800.0) == (34, 1743.0)
    assert next_open_attempt(0.0, 1743.0, 34, 1800.0) is None             # 1803 s is past 30 min


CHURN = ["churn.distribution=weibull", "churn.mean_uptime_s=30", "churn.shape=0.6", "churn.mean_downtime_s=10"]


def test_new_arrivals_wait_out_an_outage_instead_of_being_rejected():
    """The tiny Weibull churn example of docs/scenarios.md: with a session timeout below the first
    retry (1 s), an arrival that finds no chain is rejected at once (the old behaviour); with PETALS'
    30 min it retries at its back-off instants and far fewer requests are rejected."""
    at_once = simulate("tiny", seed=0, overrides=CHURN + ["churn.session_timeout_s=0.5"]).records
    waits = simulate("tiny", seed=0, overrides=CHURN).records
    for recs in (at_once, waits):      # every request accounted for exactly once, each ended
        assert sorted(r.request_id for r in recs) == list(range(30))
        assert all(r.status in ("completed", "rejected") for r in recs)
        assert all(math.isfinite(r.completion_s) and r.start_s >= r.arrival_s for r in recs if r.completed)
    rejected = lambda recs: Counter(r.reason for r in recs if not r.completed)["no_feasible_chain"]
    assert rejected(at_once) >= 15
    assert rejected(waits) <= rejected(at_once) // 5
    # the requests that waited: their first successful open was at a back-off instant after arrival
    opened_late = {r.request_id for r in at_once if r.reason == "no_feasible_chain"}
    late = [waits[i] for i in opened_late if waits[i].completed]
    assert late and all(r.wait_s >= 1.0 for r in late)


def test_without_churn_a_missing_chain_is_rejected_at_once():
    inst, presult = _sim()
    sim = LiveSimulation(inst, presult, [Request(0, 0, 0.0, 10, 2)], server_model="serial")
    req = sim.next_request()
    rec = sim.reject(req, "no_feasible_chain")
    assert (rec.status, rec.reason) == ("rejected", "no_feasible_chain")
    assert sim.next_request() is None and sim.finished_records()[0].reason == "no_feasible_chain"

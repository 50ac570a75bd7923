"""Churn on the live engine (issue 12; docs/model.md §12): the ``churn:`` section, hand-computed
failovers, and invariants under random churn (memory, accounting, no step on a down server,
determinism)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distllm_env import simulate
from distllm_env.chains import Hop, Route
from distllm_env.errors import ScenarioError
from distllm_env.live.churn import ChurnSimulation
from distllm_env.placement import Placement
from distllm_env.rng import seed_streams
from distllm_env.scenario import load_scenario
from distllm_env.scenario.churn_section import draw_period_s
from distllm_env.simulator import new_simulation
from distllm_env.workload import Request

from live_helpers import drive_churn_checked, instance_and_placement, tiny_spec

#: blocks 0-3 on servers 0 and 3, blocks 4-7 on servers 1 and 2 (server 2 replaces server 1)
TWO_CHAINS = Placement(starts=(0, 4, 4, 0), counts=(4, 4, 4, 4), num_blocks=8)
#: blocks 4-7 on server 1 only: no replacement exists while it is down
ONE_TAIL = Placement(starts=(0, 4, 0, 0), counts=(4, 4, 4, 4), num_blocks=8)


def churn_spec(tmp_path, events, server_model="independent", **churn) -> dict:
    trace = tmp_path / "churn.csv"
    trace.write_text("time_s,server,event\n" + "".join(f"{t},{j},{e}\n" for t, j, e in events))
    spec = tiny_spec(server_model=server_model, backoff=False)
    spec["churn"] = {"distribution": None, "trace": str(trace), **churn}
    return spec


def run_one(spec, placement, output_tokens=8):
    inst, presult = instance_and_placement(spec, placement)
    req = Request(id=0, client=0, arrival_s=0.0, prompt_tokens=20, output_tokens=output_tokens)
    sc = inst.scenario
    sim = new_simulation(inst, presult, [req], reservation=sc.simulator.reservation, backoff=False)
    assert isinstance(sim, ChurnSimulation)
    while (r := sim.next_request()) is not None:
        sim.commit(r, Route((Hop(0, 0, 3), Hop(1, 4, 7))))
    (rec,) = sim.finished_records()
    return sim, rec


# On paper (tiny.yaml): RTT 40 ms to every server, token overhead 10 ms → t_cj = 50 ms; τ = 2 ms per
# block → decode step 4·2 = 8 ms; prefill step 4·(0.01·l + 5) ms; prefill comm 40 + 0.1·l + 10 ms;
# initial delay 20 ms.  Route s0:0-3 | s1:4-7, prompt 20, 8 output tokens.
#   prefill: hop 0 arrives 20 + 52 = 72 → 92.8; hop 1 arrives 144.8 → 165.6 = first token.
#   one decode token: 50 + 8 + 50 + 8 = 116 ms → tokens 2, 3, 4 end at 281.6, 397.6, 513.6 ms;
#   token 4: hop 0 at 447.6 → 455.6, hop 1 at 505.6 → 513.6.
@pytest.mark.parametrize("server_model", ["independent", "serial", "batched"])
@pytest.mark.parametrize("event", ["fail", "leave"])
def test_failover_mid_decode_hand_computed(tmp_path, server_model, event):
    # at 450 ms token 4 is on server 0: fail and leave both move the session at once; 3 tokens kept.
    # Server 2 replaces s1 for blocks 4-7 and re-prefills 20 + 3 = 23 tokens:
    #   t_r = 450 + 20 (initial delay) + 52.3 (comm) + 4·5.23 (= 20.92) = 543.22 ms → recovery 93.22 ms;
    #   tokens 4..8 restart from hop 0: 543.22 + 5·116 = 1123.22 ms.
    sim, rec = run_one(churn_spec(tmp_path, [(0.45, 1, event)], server_model), TWO_CHAINS)
    assert rec.status == "completed" and rec.failovers == 1
    assert rec.first_token_s == pytest.approx(0.1656, abs=1e-12)
    assert rec.recovery_s == pytest.approx(0.09322, abs=1e-12)
    assert rec.completion_s == pytest.approx(1.12322, abs=1e-12)
    assert rec.route.to_text() == "s0:0-3|s2:4-7"
    assert sim.used_bytes == [0, 0, 0, 0]


@pytest.mark.parametrize("server_model", ["independent", "serial", "batched"])
def test_graceful_leave_finishes_the_running_step_first(tmp_path, server_model):
    # leave at 510 ms while token 4 runs on s1 (505.6 → 513.6): the step ends, 4 tokens are kept and
    # the session moves at 513.6: t_r = 513.6 + 20 + 52.4 + 4·5.24 (= 20.96) = 606.96 ms (recovery
    # 93.36 ms); tokens 5..8: 606.96 + 4·116 = 1070.96 ms.  A fail at 510 ms drops the step instead:
    # 3 tokens kept, t_r = 510 + 20 + 52.3 + 20.92 = 603.22, completion 603.22 + 5·116 = 1183.22 ms.
    _, rec = run_one(churn_spec(tmp_path, [(0.51, 1, "leave")], server_model), TWO_CHAINS)
    assert rec.recovery_s == pytest.approx(0.09336, abs=1e-12)
    assert rec.completion_s == pytest.approx(1.07096, abs=1e-12)
    _, rec = run_one(churn_spec(tmp_path, [(0.51, 1, "fail")], server_model), TWO_CHAINS)
    assert rec.recovery_s == pytest.approx(0.09322, abs=1e-12)
    assert rec.completion_s == pytest.approx(1.18322, abs=1e-12)


def test_replacement_on_the_next_hops_server_extends_that_hop(tmp_path):
    # blocks 4-5 only on s1, 4-7 on s2; route s0:0-3 | s1:4-5 | s2:6-7 (decode token 50+8 + 50+4 + 50+4
    # = 166 ms; first token 217.6 ms, token 2 at 383.6 ms).  s1 fails at 450 ms (k = 2); the router
    # offers s2:4-7, cut to s2:4-5, which joins the next hop: s2:4-7, KV for 2 more blocks on s2.
    # Re-prefill of the 2 added blocks, l = 22: t_r = 450 + 20 + 52.2 + 2·5.22 = 532.64 ms;
    # then 6 tokens at 50+8+50+8 = 116 ms: 532.64 + 696 = 1228.64 ms.
    placement = Placement(starts=(0, 4, 4, 0), counts=(4, 2, 4, 4), num_blocks=8)
    inst, presult = instance_and_placement(churn_spec(tmp_path, [(0.45, 1, "fail")]), placement)
    req = Request(id=0, client=0, arrival_s=0.0, prompt_tokens=20, output_tokens=8)
    sim = new_simulation(inst, presult, [req], backoff=False)
    while (r := sim.next_request()) is not None:
        sim.commit(r, Route((Hop(0, 0, 3), Hop(1, 4, 5), Hop(2, 6, 7))))
    (rec,) = sim.finished_records()
    assert rec.first_token_s == pytest.approx(0.2176, abs=1e-12)
    assert rec.recovery_s == pytest.approx(0.08264, abs=1e-12)
    assert rec.completion_s == pytest.approx(1.22864, abs=1e-12)
    assert rec.route.to_text() == "s0:0-3|s2:4-7"
    assert sim.used_bytes == [0, 0, 0, 0]


def test_no_chain_waits_with_backoff_then_uses_the_rejoined_server(tmp_path):
    # s1 fails at 0.45 s and rejoins at 5.45 s; its ban (2 s) has expired by then.  Retries at
    # 0.45 + 0, 1, 3, 7 s (PETALS back-off): the one at 7.45 s succeeds on s1 again.
    # t_r = 7.45 + 0.02 + 0.0523 + 0.02092 = 7.54322 s; recovery 7.09322 s; + 5·116 ms = 8.12322 s.
    spec = churn_spec(tmp_path, [(0.45, 1, "fail"), (5.45, 1, "join")], ban_s=2)
    sim, rec = run_one(spec, ONE_TAIL)
    assert rec.status == "completed" and rec.failovers == 1
    assert rec.recovery_s == pytest.approx(7.09322, abs=1e-9)
    assert rec.completion_s == pytest.approx(8.12322, abs=1e-9)
    assert rec.route.to_text() == "s0:0-3|s1:4-7"


def test_ban_keeps_the_failed_peer_out_until_it_expires(tmp_path):
    # same, default ban 15 s: s1 is back at 5.45 s but banned until 15.45 s; the retry at 0.45 + 15 s
    # is the first that may use it (15.45 is not > 15.45), so recovery = 15 + 0.09322 s.
    _, rec = run_one(churn_spec(tmp_path, [(0.45, 1, "fail"), (5.45, 1, "join")]), ONE_TAIL)
    assert rec.recovery_s == pytest.approx(15.09322, abs=1e-9)


def test_failover_timeout_rejects_and_frees_every_byte(tmp_path):
    # no replacement, no rejoin: retries at 0.45 + 0, 1, 3, 7, 15 s; 15 > idle_timeout_s = 10 → rejected
    sim, rec = run_one(churn_spec(tmp_path, [(0.45, 1, "fail")], idle_timeout_s=10), ONE_TAIL)
    assert (rec.status, rec.reason, rec.failovers) == ("rejected", "failover_timeout", 1)
    assert math.isnan(rec.completion_s)
    assert sim.used_bytes == [0, 0, 0, 0] and all(not h for h in sim.holders)
    assert sim.now_s == pytest.approx(15.45)


def test_churn_section_validation_names_the_field(tmp_path):
    base = tiny_spec()
    for churn, path in [({"distribution": "gamma"}, "churn.distribution"),
                        ({"mean_uptime_s": 0}, "churn.mean_uptime_s"),
                        ({"distribution": "pareto", "shape": 1.0}, "churn.shape"),
                        ({"bogus": 1}, "churn"),
                        ({"distribution": None}, "churn.distribution"),
                        ({"trace": "nope.txt"}, "churn.trace"),
                        ({"stable_servers": [-1]}, "churn.stable_servers.0"),
                        ({"down_event": "explode"}, "churn.down_event")]:
        with pytest.raises(ScenarioError) as exc:
            load_scenario({**base, "churn": churn})
        assert str(exc.value).startswith(path), (churn, str(exc.value))
    bad = tmp_path / "bad.csv"
    for text, word in [("time_s,server,event\n1,0,explode\n", "line 2"), ("time_s,server,event\n2,0,fail\n1,0,join\n",
                                                                             "non-decreasing"),
                       ("t,server,event\n", "header")]:
        bad.write_text(text)
        with pytest.raises(ScenarioError, match=word):
            load_scenario({**base, "churn": {"trace": str(bad)}})


def test_trace_server_outside_the_instance_is_an_error(tmp_path):
    spec = churn_spec(tmp_path, [(1.0, 9, "fail")])
    with pytest.raises(ScenarioError, match="churn.trace"):
        run_one(spec, TWO_CHAINS)


def test_churn_stream_leaves_the_other_streams_unchanged():
    old = np.random.SeedSequence(7).spawn(3)
    new = seed_streams(7)
    for ss, name in zip(old, ("instance", "workload", "policy")):
        assert np.random.default_rng(ss).random() == np.random.default_rng(new[name]).random()


@pytest.mark.parametrize("dist,shape", [("exponential", 1.0), ("weibull", 0.6), ("pareto", 2.5)])
def test_period_draws_have_the_requested_mean(dist, shape):
    rng = np.random.default_rng(0)
    x = np.array([draw_period_s(rng, dist, 100.0, shape) for _ in range(40_000)])
    assert x.min() > 0
    assert x.mean() == pytest.approx(100.0, rel=0.05)


def test_without_churn_events_the_records_equal_the_live_engine(tmp_path):
    # a churn section whose only event lies after the run changes nothing
    spec = tiny_spec(server_model="serial")
    base = simulate(spec, placement="even", routing="shortest", seed=3)
    trace = tmp_path / "late.csv"
    trace.write_text("time_s,server,event\n1e6,0,fail\n")
    churned = simulate({**spec, "churn": {"distribution": None, "trace": str(trace)}}, placement="even",
                       routing="shortest", seed=3)
    assert churned.meta["engine"] == "live"
    assert [(r.start_s, r.first_token_s, r.completion_s) for r in base.records] == \
        [(r.start_s, r.first_token_s, r.completion_s) for r in churned.records]


# -- invariants under random churn -------------------------------------------------------------------
CASES = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "server_model": st.sampled_from(["independent", "serial", "batched"]),
    "distribution": st.sampled_from(["exponential", "weibull", "pareto"]),
    "shape": st.floats(1.2, 3.0),
    "up": st.floats(0.5, 30.0),
    "down": st.floats(0.2, 10.0),
    "down_event": st.sampled_from(["fail", "leave"]),
    "routing": st.sampled_from(["shortest", "ws-rr"]),
    "memory_gb": st.sampled_from([None, 0.1027]),
})


def run_checked(case):
    spec = tiny_spec(memory_gb=case["memory_gb"], server_model=case["server_model"])
    spec["workload"] = {**spec["workload"], "num_requests": 25, "arrival_rate_per_s": 4.0}
    spec["churn"] = {"distribution": case["distribution"], "shape": case["shape"], "mean_uptime_s": case["up"],
                     "mean_downtime_s": case["down"], "down_event": case["down_event"], "idle_timeout_s": 20}
    from distllm_env.api import resolve_routing
    from distllm_env.instance import build_instance
    from distllm_env.rng import generators
    from distllm_env.workload import generate_requests

    sc = load_scenario(spec)
    inst = build_instance(sc, case["seed"])
    _, presult = instance_and_placement(spec, TWO_CHAINS)
    reqs = generate_requests(inst, case["seed"])
    sim = new_simulation(inst, presult, reqs, backoff=sc.simulator.backoff)
    sim.step_log = []
    router = resolve_routing(case["routing"], sc)
    rng = generators(seed_streams(case["seed"])["policy"], 2)[1]
    sim.set_failover_router(router, rng)
    # memory never over-committed, equal to what the holders hold; routers offer only servers up
    return sim, drive_churn_checked(sim, router, rng)


@settings(max_examples=25, deadline=None)
@given(CASES)
def test_invariants_under_random_churn(case):
    sim, records = run_checked(case)
    # every request ends exactly once, completed (ordered finite times) or rejected with a reason
    assert [r.request_id for r in records] == list(range(len(records)))
    for r in records:
        assert r.status in ("completed", "rejected")
        assert r.completed or r.reason
        assert r.recovery_s >= 0 and (r.failovers > 0 or r.recovery_s == 0)
    assert sim.used_bytes == [0] * len(sim.used_bytes)
    assert not sim._recovering
    # no step on a down server: a finished step arrived while its server was up, and no fail of
    # that server fell inside it (a graceful leave lets an arrived step finish)
    down: dict[int, list[tuple[float, float]]] = {}
    since: dict[int, float] = {}
    fails: dict[int, list[float]] = {}
    for t, j, ev in sim.server_log:
        if ev == "join":
            down.setdefault(j, []).append((since.pop(j), t))
        elif j not in since:
            since[j] = t
        if ev == "fail":
            fails.setdefault(j, []).append(t)
    for j, t in since.items():
        down.setdefault(j, []).append((t, math.inf))
    for j, arr, done in sim.step_log:
        assert not any(a < arr < b for a, b in down.get(j, [])), (j, arr, done)
        assert not any(arr < f < done for f in fails.get(j, [])), (j, arr, done)
    # determinism per seed
    _, again = run_checked(case)
    assert [repr(r) for r in again] == [repr(r) for r in records]


# -- online re-placement -----------------------------------------------------------------------------
def test_joining_server_takes_the_least_served_window(tmp_path):
    from distllm_env.baselines.cg_bp import CGBPPlacement
    from distllm_env.baselines.petals import PetalsPlacement

    # s1 placed on blocks 0-3 fails at 0.1 s and rejoins at 0.2 s: blocks 0-3 are held by s0 and s3,
    # blocks 4-7 by s2 alone, so both online rules move s1 to blocks 4-7 (PETALS: lowest per-block
    # throughput window; CG-BP: lexicographically smallest sorted capacity window).
    placement = Placement(starts=(0, 0, 4, 0), counts=(4, 4, 4, 4), num_blocks=8)
    for policy in (PetalsPlacement(), CGBPPlacement()):
        inst, presult = instance_and_placement(churn_spec(tmp_path, [(0.1, 1, "fail"), (0.2, 1, "join")]),
                                               placement)
        req = Request(id=0, client=0, arrival_s=1.0, prompt_tokens=20, output_tokens=2)
        sim = new_simulation(inst, presult, [req], backoff=False)
        sim.set_placement_policy(policy, np.random.default_rng(0))
        while (r := sim.next_request()) is not None:
            assert sim.view.placement.starts[1] == 4
            sim.commit(r, sim.view.route_from_chain([0, 1]))     # s1 now serves blocks 4-7
        (rec,) = sim.finished_records()
        assert sim.block_moves == [(0.2, 1, 4)]
        assert rec.status == "completed"


def test_place_joining_returning_nonsense_is_an_error(tmp_path):
    from distllm_env.errors import DistLLMError

    class Bad:
        name = "bad"

        def place_joining(self, server, count, view, rng):
            return 7

    inst, presult = instance_and_placement(churn_spec(tmp_path, [(0.1, 1, "fail"), (0.2, 1, "join")]), TWO_CHAINS)
    sim = new_simulation(inst, presult, [Request(id=0, client=0, arrival_s=1.0, prompt_tokens=20, output_tokens=2)])
    sim.set_placement_policy(Bad(), np.random.default_rng(0))
    with pytest.raises(DistLLMError, match="place_joining"):
        sim.next_request()


@pytest.mark.parametrize("preset", ["petals-swarm-churn", "clustered-churn"])
def test_churn_presets_run_on_the_live_engine_and_repeat_per_seed(preset):
    a = simulate(preset, seed=2, overrides=["workload.num_requests=40", "churn.mean_uptime_s=300"])
    b = simulate(preset, seed=2, overrides=["workload.num_requests=40", "churn.mean_uptime_s=300"])
    assert a.meta["engine"] == "live"
    assert [repr(r) for r in a.records] == [repr(r) for r in b.records]
    assert a.server_events == b.server_events and a.server_events
    stable = set(a.scenario.churn.stable_servers)
    assert not any(j in stable for _, j, _ in a.server_events)
    assert a.summary["num_hit_by_failure"] == sum(r.failovers > 0 for r in a.records)

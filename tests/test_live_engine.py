"""The live engine (distllm_env/live): hand-computed ``serial`` case, exact agreement with the analytic
engine under ``independent``, engine selection from the scenario, honest view, determinism, rejection
at arrival, and the ``simulator`` section's new fields."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import distllm_env.api as api
from distllm_env import simulate
from distllm_env.errors import ScenarioError
from distllm_env.live.engine import LiveSimulation
from distllm_env.outputs import record_row
from distllm_env.placement import Placement
from distllm_env.scenario import load_scenario
from distllm_env.simulator import Simulation, new_simulation
from distllm_env.workload import Request

from live_helpers import instance_and_placement, tiny_spec


# -- 1. hand-computed serial case ------------------------------------------------------------------
def one_server_spec() -> dict:
    """A 4-block toy model entirely on one server (tiny's GPU and network; τ = 25 ms per block)."""
    spec = tiny_spec(server_model="serial", backoff=False)
    spec["models"]["toy-8L"]["num_blocks"] = 4
    spec["gpus"]["toy-gpu"]["calibration"]["toy-8L"]["tau_decode_ms"] = 25.0
    spec["servers"] = spec["servers"][:1]
    return spec


def test_two_identical_sessions_on_one_server_serial_hand_computed():
    inst, presult = instance_and_placement(one_server_spec(), placement=Placement(starts=(0,), counts=(4,),
                                                                                  num_blocks=4))
    # the inputs of the hand computation (tiny.yaml): RTT 40 ms, token overhead 10 ms, prefill
    # overhead 0.1 ms/token + 10 ms, initial delay 20 ms, τ = 25 ms, τ^I(l) = 0.01 ms·l + 5 ms
    assert inst.rtt_s[0, 0] == pytest.approx(0.040) and inst.token_cost_s[0, 0] == pytest.approx(0.050)
    assert inst.initial_delay_s == pytest.approx(0.020)
    assert inst.tau_prefill_s(20)[0] == pytest.approx(0.0052)
    reqs = [Request(id=i, client=0, arrival_s=0.0, prompt_tokens=20, output_tokens=4) for i in range(2)]
    sim = LiveSimulation(inst, presult, reqs, backoff=False, server_model="serial")
    while (req := sim.next_request()) is not None:
        sim.commit(req, sim.view.route_from_chain([0]))
    a, b = sim.finished_records()
    # On paper (m = 4 blocks): prefill step 4·5.2 = 20.8 ms, decode step 4·25 = 100 ms; comm at
    # prefill 40 + 2 + 10 = 52 ms, at decode 50 ms.  Both prefill steps reach the server at
    # 20 + 52 = 72 ms; A (request 0) runs 72 → 92.8, B waits and runs 92.8 → 113.6 ms.
    # A tok1 arrives 142.8 → 242.8; B tok1 arrives 163.6, waits → 242.8 → 342.8;
    # A tok2 arrives 292.8, waits → 342.8 → 442.8; B tok2 arrives 392.8, waits → 442.8 → 542.8;
    # A tok3 arrives 492.8, waits → 542.8 → 642.8; B tok3 arrives 592.8, waits → 642.8 → 742.8.
    # Steady state: one token per session every 2 × 100 ms (> 100 + 50 ms uncontended).
    assert (a.start_s, b.start_s) == (0.0, 0.0)
    assert a.first_token_s == pytest.approx(0.0928, abs=1e-12)
    assert b.first_token_s == pytest.approx(0.1136, abs=1e-12)
    assert a.completion_s == pytest.approx(0.6428, abs=1e-12)
    assert b.completion_s == pytest.approx(0.7428, abs=1e-12)
    # per-token time (completion − arrival) / l_out
    assert a.completion_s / 4 == pytest.approx(0.1607, abs=1e-12)
    assert b.completion_s / 4 == pytest.approx(0.1857, abs=1e-12)


def test_two_identical_sessions_on_one_server_batched_hand_computed():
    spec = one_server_spec()
    spec["simulator"]["server_model"] = "batched"
    inst, presult = instance_and_placement(spec, placement=Placement(starts=(0,), counts=(4,), num_blocks=4))
    reqs = [Request(id=i, client=0, arrival_s=0.0, prompt_tokens=20, output_tokens=4) for i in range(2)]
    sim = LiveSimulation(inst, presult, reqs, backoff=False, server_model="batched")
    while (req := sim.next_request()) is not None:
        sim.commit(req, sim.view.route_from_chain([0]))
    a, b = sim.finished_records()
    # Both prefill steps reach the server at 72 ms and run as one batch: max(weight read 4·25 ms,
    # compute 2·20.8 ms) = 100 ms → first tokens at 172 ms.  Each decode batch (both sessions) takes
    # max(100 ms, 2·4·2·12.6e6 FLOP / 10 TFLOP/s = 0.02 ms) = 100 ms, and the next steps arrive 50 ms
    # later: tokens at 172, 322, 472, 622 ms for both sessions.
    for r in (a, b):
        assert r.first_token_s == pytest.approx(0.172, abs=1e-12)
        assert r.completion_s == pytest.approx(0.622, abs=1e-12)


# -- 2. independent under the live engine = analytic engine, exactly -------------------------------
@pytest.mark.parametrize("name", ["tiny", "paper-clustered", "paper-abovenet"])
def test_live_independent_reproduces_the_analytic_records_exactly(monkeypatch, name):
    analytic = simulate(name, seed=0)
    assert analytic.meta["engine"] == "analytic"
    monkeypatch.setattr(api, "new_simulation", lambda *a, **k: new_simulation(*a, engine="live", **k))
    live = simulate(name, seed=0)
    assert live.meta["engine"] == "live"
    assert len(live.records) == len(analytic.records)
    for x, y in zip(analytic.records, live.records):
        for f in dataclasses.fields(x):
            vx, vy = getattr(x, f.name), getattr(y, f.name)
            assert vx == vy or (isinstance(vx, float) and math.isnan(vx) and math.isnan(vy)), (f.name, vx, vy)
    if name == "paper-clustered":
        assert any(r.wait_s > 0 for r in analytic.records if r.completed)   # waits are reproduced too


# -- 3. engine selection from the scenario ---------------------------------------------------------
def test_engine_follows_the_scenario():
    for model, engine in (("independent", "analytic"), ("serial", "live"), ("batched", "live")):
        res = simulate(load_scenario(tiny_spec(server_model=model)), seed=0)
        assert res.meta["engine"] == engine
        assert all(r.completed for r in res.records)
    inst, presult = instance_and_placement(tiny_spec())
    known = [Request(id=0, client=0, arrival_s=0.0, prompt_tokens=5, output_tokens=3)]
    unknown = [Request(id=0, client=0, arrival_s=0.0, prompt_tokens=5, output_tokens=3, declared_output_tokens=9,
                       output_tokens_known=False)]
    assert type(new_simulation(inst, presult, known)) is Simulation
    assert type(new_simulation(inst, presult, unknown)) is LiveSimulation


def test_simulator_section_validation_names_the_field():
    with pytest.raises(ScenarioError, match="simulator.server_model"):
        load_scenario(tiny_spec(server_model="fluid"))
    with pytest.raises(ScenarioError, match="simulator.batched_step_overhead_ms"):
        load_scenario(tiny_spec(batched_step_overhead_ms=-1))
    sc = load_scenario(tiny_spec(server_model="batched", batched_step_overhead_ms=2.5))
    assert (sc.simulator.server_model, sc.simulator.batched_step_overhead_ms) == ("batched", 2.5)
    assert load_scenario("tiny").simulator.server_model == "independent"


# -- 4. the view is honest -------------------------------------------------------------------------
class Snoop:
    """A router that tries to read the true output length."""

    name = "snoop"

    def __init__(self):
        self.seen = []

    def route(self, req, view, rng):
        self.seen.append(req.output_tokens)
        for obj in (req, view):
            for attr in ("true_output_tokens", "true_tokens", "actual_output_tokens"):
                with pytest.raises(AttributeError):
                    getattr(obj, attr)
        assert view.request.output_tokens == req.declared_output_tokens
        for j in range(view.num_servers):
            assert view.active_sessions(j) >= 0 and view.queued_work_s(j) >= 0.0
        return view.shortest(req.client, view.static_cost(req))[0]


@pytest.mark.parametrize("model", ["independent", "serial", "batched"])
def test_router_sees_only_the_declared_length_and_records_end_at_the_true_one(model):
    inst, presult = instance_and_placement(tiny_spec(server_model=model))
    rng = np.random.default_rng(5)
    true = rng.integers(1, 10, size=12)
    reqs = [Request(id=i, client=0, arrival_s=0.3 * i, prompt_tokens=10, output_tokens=int(t),
                    declared_output_tokens=40, output_tokens_known=False) for i, t in enumerate(true)]
    sim = new_simulation(inst, presult, reqs)
    assert isinstance(sim, LiveSimulation)
    snoop = Snoop()
    api.run_routing(sim, snoop, rng)
    assert snoop.seen == [40] * 12
    recs = sim.finished_records()
    assert [r.output_tokens for r in recs] == [int(t) for t in true]
    assert all(r.declared_tokens == 40 for r in recs)
    assert all(r.kv_bytes_per_block == inst.model.kv_bytes_per_block(10, 40) for r in recs)
    if model == "independent":     # closed form at the TRUE length
        for r in recs:
            lone = simulate(load_scenario(tiny_spec()), placement=presult, routing="shortest",
                            requests=[Request(id=0, client=0, arrival_s=0.0, prompt_tokens=10,
                                              output_tokens=r.output_tokens)]).records[0]
            assert r.completion_s - r.start_s == pytest.approx(lone.completion_s - lone.start_s, rel=1e-12)


def test_view_reports_contention_now():
    inst, presult = instance_and_placement(tiny_spec(server_model="serial"))
    reqs = [Request(id=i, client=0, arrival_s=0.001 * i, prompt_tokens=10, output_tokens=30) for i in range(6)]
    sim = new_simulation(inst, presult, reqs)
    route = sim.view.route_from_chain([0, 1, 2])
    seen = []
    while (req := sim.next_request()) is not None:
        seen.append([sim.view.active_sessions(j) for j in range(4)])
        sim.commit(req, route)
    assert seen[0] == [0, 0, 0, 0] and seen[-1][:3] == [5, 5, 5] and seen[-1][3] == 0
    assert all(r.completed for r in sim.finished_records())


# -- 5. determinism and rejection at arrival --------------------------------------------------------
@pytest.mark.parametrize("model", ["serial", "batched"])
def test_same_seed_gives_identical_records(model):
    sc = load_scenario(tiny_spec(server_model=model, backoff=True))
    rows = [[record_row(r) for r in simulate(sc, seed=7).records] for _ in range(2)]
    assert repr(rows[0]) == repr(rows[1])


@pytest.mark.parametrize("model", ["independent", "serial"])
def test_request_with_rejection_is_recorded_at_arrival_without_routing(model):
    inst, presult = instance_and_placement(tiny_spec(server_model=model))
    reqs = [Request(id=0, client=0, arrival_s=0.0, prompt_tokens=10, output_tokens=5),
            Request(id=1, client=0, arrival_s=1.0, prompt_tokens=3000, output_tokens=5, rejection="exceeds_max_sequence"),
            Request(id=2, client=0, arrival_s=2.0, prompt_tokens=10, output_tokens=5)]
    sim = new_simulation(inst, presult, reqs)
    routed = []
    while (req := sim.next_request()) is not None:
        routed.append(req.id)
        sim.commit(req, sim.view.shortest(req.client, sim.view.static_cost(req))[0])
    recs = sim.finished_records()
    assert routed == [0, 2]
    assert (recs[1].status, recs[1].reason) == ("rejected", "exceeds_max_sequence")
    assert recs[0].completed and recs[2].completed

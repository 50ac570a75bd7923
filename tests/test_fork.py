"""Simulation.fork() (issue 13 item 2; docs/architecture.md "Forking a simulation"): a fork continues
byte-identically to the original, and changing the fork never touches the original -- on the analytic
engine, the live engine (batched servers, unknown lengths) and a churn preset."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from distllm_env.api import place
from distllm_env.errors import DistLLMError, NoFeasibleChain
from distllm_env.instance import build_instance
from distllm_env.live.churn import ChurnSimulation
from distllm_env.live.engine import LiveSimulation
from distllm_env.outputs import requests_csv
from distllm_env.registry import make_routing
from distllm_env.rng import generators, seed_streams
from distllm_env.scenario import load_scenario
from distllm_env.simulator import Simulation, new_simulation
from distllm_env.workload import generate_requests

CASES = {
    # name: (scenario, overrides, expected engine class)
    "analytic": ("paper-clustered", ["workload.num_requests=60", "workload.arrival_rate_per_s=2"], Simulation),
    "live-batched-unknown": ("azure-conv-swarm", ["workload.num_requests=40"], LiveSimulation),
    "churn": ("clustered-churn", ["workload.num_requests=40"], ChurnSimulation),
}
SEED = 10001


def build(case: str):
    name, overrides, cls = CASES[case]
    sc = load_scenario(name, overrides)
    inst = build_instance(sc, SEED)
    reqs = generate_requests(inst, SEED)
    placement_rng, rng = generators(seed_streams(SEED)["policy"], 2)
    presult, _, _ = place(inst, "cg-bp", placement_rng, sc)
    sim = new_simulation(inst, presult, reqs, reservation=sc.simulator.reservation, backoff=sc.simulator.backoff,
                         allocation_delay_s=0.5)
    assert type(sim) is cls
    router = make_routing("ws-rr")
    if hasattr(sim, "set_failover_router"):
        sim.set_failover_router(router, rng)
    return sim, router, rng


def route_one(sim, router, rng, req) -> None:
    try:
        sim.commit(req, router.route(req, sim.view, rng))
    except NoFeasibleChain:
        sim.reject(req, "no_feasible_chain")


def run_to_end(sim, router, rng) -> str:
    """Route the request being routed (if any) and every later one; the per-request CSV text."""
    req = sim.current_request
    if req is not None:
        route_one(sim, router, rng, req)
    while (req := sim.next_request()) is not None:
        route_one(sim, router, rng, req)
    return requests_csv(sim.finished_records())


def to_middle(sim, router, rng):
    """Route half of the requests; return the next one, being routed (not yet committed)."""
    n = len(sim.requests)
    while (req := sim.next_request()) is not None and req.id < n // 2:
        route_one(sim, router, rng, req)
    assert req is not None
    return req


@pytest.fixture(scope="module")
def reference():
    out = {}
    for case in CASES:
        out[case] = run_to_end(*build(case))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_fork_continues_byte_identically(case, reference):
    sim, router, rng = build(case)
    req = to_middle(sim, router, rng)
    fork, f_router, f_rng = sim.fork(also=(router, rng))
    assert fork is not sim and fork.view is not sim.view and fork.view._sim is fork
    assert fork.current_request.id == req.id
    assert fork.instance is sim.instance and fork.capacity_bytes is sim.capacity_bytes   # shared, not copied
    if case == "churn":
        assert fork.router is f_router and fork.router_rng is f_rng      # failover router forked with it
    forked = run_to_end(fork, f_router, f_rng)
    original = run_to_end(sim, router, rng)
    assert forked == reference[case]
    assert original == reference[case]


@pytest.mark.parametrize("case", list(CASES))
def test_changing_the_fork_leaves_the_original_alone(case, reference):
    sim, router, rng = build(case)
    req = to_middle(sim, router, rng)
    now, heap_len = sim.now_s, len(sim._events)
    records_before = list(sim.records)
    fork, f_router, f_rng = sim.fork(also=(router, rng))
    # a different decision: the most expensive of the 3 cheapest chains (static cost), else reject
    chains = fork.view.k_cheapest(req.client, 3, fork.view.static_cost(req), req.client_blocks)
    if len(chains) > 1:
        fork.commit(req, chains[-1][0])
    else:
        fork.reject(req, "no_feasible_chain")
    changed = run_to_end(fork, f_router, f_rng)
    assert changed != reference[case]                 # the fork really went elsewhere
    assert sim.now_s == now and len(sim._events) == heap_len and sim.records == records_before
    assert sim.current_request is req
    assert run_to_end(sim, router, rng) == reference[case]


def test_future_replaces_the_requests_not_yet_arrived():
    sim, router, rng = build("analytic")
    req = to_middle(sim, router, rng)
    future = [r for r in sim.requests[req.id + 1:][:3]]
    fork = sim.fork(future=future)
    assert len(fork.requests) == req.id + 4 and len(sim.requests) == 60
    assert [r.id for r in fork.requests[req.id + 1:]] == [req.id + 1, req.id + 2, req.id + 3]
    run_to_end(fork, router, rng)
    assert all(r is not None for r in fork.records)
    with pytest.raises(DistLLMError, match="before"):
        sim.fork(future=[future[0].__class__(id=0, client=0, arrival_s=sim.now_s - 1.0, prompt_tokens=8,
                                             output_tokens=8)])


@pytest.mark.parametrize("case", ["analytic", "live-batched-unknown"])
def test_future_keeps_deferred_requests(case):
    """A deferred request (the env's defer action) has arrived: a fork with a new future keeps it."""
    sim, router, rng = build(case)
    req = to_middle(sim, router, rng)
    sim.defer(req, sim.requests[req.id + 1].arrival_s + 1e-6)       # after the next arrival
    nxt = sim.next_request()
    assert nxt.id == req.id + 1
    fork = sim.fork(future=[replace(sim.requests[nxt.id + 1], arrival_s=max(sim.now_s, sim.requests[nxt.id + 1]
                                                                            .arrival_s))])
    assert len(fork.requests) == nxt.id + 2
    ids = []
    route_one(fork, router, rng, fork.current_request)
    while (q := fork.next_request()) is not None:
        ids.append(q.id)
        route_one(fork, router, rng, q)
    assert req.id in ids and nxt.id + 1 in ids
    assert all(r is not None and r.status != "pending" for r in fork.records)


# -- ClusterView.fork, as documented (docs/architecture.md "Forking a simulation") ------------------------
ARCH = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def documented_example() -> dict:
    """The namespace of the python block of docs/architecture.md "Forking a simulation"."""
    text = ARCH.read_text()
    section = text[text.index("## Forking a simulation"):]
    section = section[:section.index("\n## ", 1)]
    code = re.search(r"^```python\n(.*?)^```", section, re.M | re.S).group(1)
    ns: dict = {}
    exec(compile(code, str(ARCH), "exec"), ns)
    return ns


@pytest.mark.parametrize("case", list(CASES))
def test_view_fork_defaults_to_no_future_arrivals(case):
    sim, router, rng = build(case)
    req = to_middle(sim, router, rng)
    n = len(sim.requests)
    for f in (sim.view.fork(), sim.view.fork(None)):
        assert f.current_request.id == req.id and len(f.requests) == req.id + 1    # nothing after req
        with pytest.raises(DistLLMError, match=f"request {req.id} was neither committed nor rejected"):
            f.next_request()                            # the documented pending-request rule
        route_one(f, router, rng, f.current_request)
        later = []
        while (q := f.next_request()) is not None:
            later.append(q.id)
            route_one(f, router, rng, q)
        assert later == []                              # no arrivals after now, true or invented
        recs = f.finished_records()
        assert len(recs) == req.id + 1 and all(r.status in ("completed", "rejected") for r in recs)
    assert len(sim.requests) == n and sim.current_request is req and sim.records[req.id] is None


def test_documented_fork_example_predicts_the_real_completion():
    """Analytic engine: a committed session's completion is fixed at commit, so the completion the
    documented router reads in its fork for the chain it picks is exactly the real run's -- and that
    chain is the earliest-finishing of the candidates."""
    ns = documented_example()
    assert ns["res"].summary["num_requests"] == 20
    sim, _, rng = build("analytic")
    peek = ns["PeekRouter"]()
    predicted, checked = {}, 0
    while (req := sim.next_request()) is not None:
        view = sim.view
        chains = [r for r, _ in view.k_cheapest(req.client, 3, view.static_cost(req), req.client_blocks)]
        route = peek.route(req, view, rng)
        if len(chains) > 1:          # recompute the fork completions independently of the router
            future = [replace(req, arrival_s=view.now_s + 1.0 + k) for k in range(2)]
            done = {}
            for k, c in enumerate(chains):
                rec = view.fork(future).commit(req, c)
                if rec.status == "completed":
                    done[k] = rec.completion_s
            k = chains.index(route)
            assert done and done[k] == min(done.values())
            predicted[req.id] = done[k]
        sim.commit(req, route)
    recs = sim.finished_records()
    for i, t in predicted.items():
        assert recs[i].completion_s == t
        checked += 1
    assert checked >= 10
    assert len(recs) == 60 and all(r.status in ("completed", "rejected") for r in recs)

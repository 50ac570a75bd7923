"""Simulator core hardening (issue 9 items 4, 5; issue 10 items 10, 11): no non-finite time is ever
recorded as completed, routers and planners avoid servers the client cannot reach, typed events
keep their documented tie-break order, the view does not import the simulator, and the view's static
cost is perf's formula."""

from __future__ import annotations

import ast
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from distllm_env import simulate
from distllm_env.chains import Hop, Route
from distllm_env.instance import build_instance
from distllm_env.metrics import summarize
from distllm_env.perf import static_request_cost_s
from distllm_env.placement import Placement, PlacementResult
from distllm_env.scenario import load_scenario
from distllm_env.simulator import (Arrival, RequestRecord, SessionEnd, SessionStart, Simulation, check_record)
from distllm_env.workload import Request
from tests.conftest import preset_dict

ROOT = Path(__file__).resolve().parents[1]
ROUTERS = ["random", "round-robin", "shortest", "petals", "ws-rr"]


def _island_graph(directory: Path) -> Path:
    """Nodes 0_c (the client), 1_a, 2_b, 3_d on one island; 4_alone with no link."""
    graph = directory / "island.graph"
    graph.write_text("NODES 5\nlabel x y\n0_c 0 0\n1_a 0 0\n2_b 0 0\n3_d 0 0\n4_alone 0 0\n\n"
                     "EDGES 6\nlabel src dest weight bw delay\n"
                     "e0 0 1 10 1 5000\ne1 1 2 10 1 5000\ne2 2 3 10 1 5000\n"
                     "e3 1 0 10 1 5000\ne4 2 1 10 1 5000\ne5 3 2 10 1 5000\n")
    return graph


@pytest.fixture(scope="module")
def island(tmp_path_factory):
    """The client and three servers on one island, a fourth server (index 3) alone (issue 9)."""
    d = preset_dict("tiny")
    d["topology"] = {"repetita": str(_island_graph(tmp_path_factory.mktemp("island")))}
    d["servers"] = [{"gpu": "toy-gpu", "node": n} for n in ("1_a", "2_b", "3_d", "4_alone")]
    d["clients"] = [{"node": "0_c"}]
    return load_scenario(d)


def _uses(rec: RequestRecord, server: int) -> bool:
    return rec.route is not None and any(h.server == server for h in rec.route.hops)


@pytest.mark.parametrize("placement", ["even", "cg-bp"])
@pytest.mark.parametrize("routing", ROUTERS)
def test_routers_never_use_an_unreachable_server(island, placement, routing):
    inst = build_instance(island, 0)
    assert np.isinf(inst.rtt_s[0, 3]) and np.isfinite(inst.rtt_s[0, :3]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no numpy warnings on the way
        res = simulate(island, placement, routing, seed=0)
    assert len(res.records) == island.workload.num_requests
    assert all(r.completed for r in res.records)               # the island alone serves everyone
    assert not any(_uses(r, 3) for r in res.records)
    assert all(math.isfinite(r.completion_s) for r in res.records)
    if placement == "even":                                    # server 3 hosts blocks: the routers had the choice
        assert res.placement_result.placement.counts[3] > 0


def test_cg_bp_excludes_unreachable_servers_with_a_note(island):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = simulate(island, "cg-bp", "ws-rr", seed=0)
    diag = res.placement_result.diagnostics
    assert diag["excluded_servers"] == [3]
    assert len(diag["notes"]) == 1 and "[3]" in diag["notes"][0] and "unreachable" in diag["notes"][0]
    assert res.placement_result.placement.counts[3] == 0
    assert not res.placement_result.placement.uncovered_ranges()
    even = simulate(island, "even", "ws-rr", seed=0)
    assert sum(r.completed for r in res.records) == sum(r.completed for r in even.records) == 30


def _sim(sc, requests, **kw):
    inst = build_instance(sc, 0)
    pl = Placement((0, 0, 4, 4), (4, 4, 4, 4), 8)        # servers 0, 1: blocks 0-3; 2, 3: blocks 4-7
    return inst, Simulation(inst, PlacementResult(pl), requests, **kw)


GOOD = Route((Hop(0, 0, 3), Hop(2, 4, 7)))


def test_commit_rejects_a_route_through_an_unreachable_server(island):
    _, sim = _sim(island, [Request(0, 0, 0.0, 20, 32), Request(1, 0, 0.0, 20, 32)])
    req = sim.next_request()
    rec = sim.commit(req, Route((Hop(0, 0, 3), Hop(3, 4, 7))))
    assert (rec.status, rec.reason) == ("rejected", "unreachable") and math.isnan(rec.completion_s)
    assert all(sim.book.stays_free_bytes(j, 0.0) == sim.capacity_bytes[j] for j in range(4))   # nothing held
    rec = sim.commit(sim.next_request(), GOOD)
    assert rec.completed and math.isfinite(rec.completion_s)
    assert sim.finished_records()[0].reason == "unreachable"


def test_non_finite_times_are_rejected_never_completed():
    sc = load_scenario("tiny")
    reqs = [Request(0, 0, 0.0, 20, 32), Request(1, 0, math.inf, 20, 32)]
    # an infinite allocation delay: the hold, and so the completion, is inf
    _, sim = _sim(sc, reqs, allocation_delay_s=math.inf, backoff=False)
    rec0 = sim.commit(sim.next_request(), GOOD)
    assert (rec0.status, rec0.reason) == ("rejected", "non_finite_time")
    rec1 = sim.commit(sim.next_request(), GOOD)    # arrives at t = inf
    assert (rec1.status, rec1.reason) == ("rejected", "non_finite_time")
    assert sim.next_request() is None
    s = summarize(sim.finished_records(), sim.capacity_bytes)
    assert s["num_completed"] == 0 and s["rejected_reasons"] == {"non_finite_time": 2}


def test_record_invariant_catches_a_non_finite_completion():
    bad = RequestRecord(0, 0, 0.0, 0.0, 1.0, math.inf, 0.0, 20, 32, 1, None, "completed", "")
    with pytest.raises(AssertionError, match="completed with times"):
        check_record(bad)
    with pytest.raises(AssertionError):
        summarize([bad], [10])
    check_record(RequestRecord(0, 0, 0.0, math.nan, math.nan, math.nan, math.nan, 20, 32, 0, None, "rejected", "x"))


def test_event_tie_break_order_is_documented_and_kept():
    assert SessionStart.priority < SessionEnd.priority < Arrival.priority
    with pytest.raises(Exception):
        Arrival(0).request_id = 1                      # frozen
    # a request arriving exactly when the sessions filling a server end sees their memory released
    sc = load_scenario("tiny")
    _, probe = _sim(sc, [Request(0, 0, 0.0, 20, 32)], backoff=False)
    out = probe.evaluate(probe.next_request(), GOOD)
    k = min(int(probe.capacity_bytes[j]) // need for j, need in out.hops)     # sessions that fit at once
    assert k >= 1
    end = out.completion_s
    reqs = [Request(i, 0, 0.0, 20, 32) for i in range(k)] + [Request(k, 0, end, 20, 32)]
    _, sim = _sim(sc, reqs, backoff=False)
    for _ in range(k):
        assert sim.commit(sim.next_request(), GOOD).start_s == 0.0
    req = sim.next_request()
    assert sim.now_s == end and sim.active_sessions == 0 and sim.max_active_sessions == k
    assert sim.commit(req, GOOD).start_s == end


def test_view_does_not_import_the_simulator():
    tree = ast.parse((ROOT / "distllm_env" / "view.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "simulator" not in imported and "distllm_env.simulator" not in imported


def test_view_static_cost_is_perfs_formula():
    sc = load_scenario("paper-gtsce")
    inst = build_instance(sc, 0)
    req = Request(0, 0, 0.0, 20, 64)
    from distllm_env.policies import default_placement, make_placement
    pr = make_placement(default_placement(sc), sc).place(inst, np.random.default_rng(0))
    sim = Simulation(inst, pr, [req])
    req = sim.next_request()
    cost = sim.view.static_cost(req)
    for m in (1, 3, 7):
        want = static_request_cost_s(inst.prefill_comm_s(20)[0], inst.tau_prefill_s(20), inst.token_cost_s[0],
                                     inst.tau_decode_s, m, 64)
        np.testing.assert_array_equal(cost.fixed_s + cost.per_block_s * m, want)


@pytest.fixture(scope="module")
def island_bloom(tmp_path_factory):
    """The same island with BLOOM-176B on A100s (large enough for PETALS' own placement), as a file."""
    directory = tmp_path_factory.mktemp("island_bloom")
    d = {"name": "island-bloom", "model": "BLOOM-176B", "topology": {"repetita": str(_island_graph(directory))},
         "servers": [{"gpu": "A100-80GB", "node": n} for n in ("1_a", "2_b", "3_d", "4_alone")],
         "clients": [{"node": "0_c"}],
         "workload": {"arrival": "poisson", "arrival_rate_per_s": 0.5, "num_requests": 20, "prompt_tokens": 20,
                      "output_tokens": 32}}
    path = directory / "island.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.mark.parametrize("placement", ["petals", "cg-bp"])
def test_validate_then_simulate_consistently_on_a_partly_disconnected_topology(island_bloom, placement, capsys):
    from distllm_env.cli import main
    assert main(["scenarios", "validate", str(island_bloom)]) in (0, None)
    sc = load_scenario(island_bloom)
    for routing in ROUTERS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = simulate(sc, placement, routing, seed=0)
        diag = res.placement_result.diagnostics
        assert diag["excluded_servers"] == [3] and res.placement_result.placement.counts[3] == 0
        assert all(r.completed and not _uses(r, 3) for r in res.records)
    capsys.readouterr()
    assert main(["simulate", "--scenario", str(island_bloom), "--placement", placement, "--routing", "shortest"]) in (0, None)
    notes = [line for line in capsys.readouterr().out.splitlines() if "unreachable" in line]
    assert len(notes) == 1 and "[3]" in notes[0]


@pytest.mark.parametrize("mode", ["calendar", "published"])
def test_huge_allocation_delays_with_backoff_return(mode):
    """Requests queue behind sessions holding memory for 1e12 s: the back-off instant of a 1e12 s
    wait is found in closed form (walking the instants never ended)."""
    from distllm_env.reservations import backoff_index, backoff_instant_s
    sc = load_scenario("tiny", ["simulator.backoff=true", "workload.num_requests=60",
                                "workload.arrival_rate_per_s=20", f"simulator.reservation={mode}"])
    res = simulate(sc, "even", "shortest", seed=0, allocation_delays={"default": 1e12})
    done = [r for r in res.records if r.completed]
    assert len(done) == 60 and max(r.wait_s for r in done) > 1e12
    for r in done:
        check_record(r)
        k = backoff_index(r.start_s - r.arrival_s)
        assert r.start_s == r.arrival_s + backoff_instant_s(k)          # starts on a retry instant


def test_routing_env_never_offers_a_chain_through_an_unreachable_server(island, monkeypatch):
    """The RequestRouting env's candidates (hence its action mask) exclude every chain through a server
    the request's client cannot reach, even when the cost model prices such a chain finitely (here
    patched to do so); every request is accounted for and none is rejected ``unreachable``."""
    import gymnasium as gym

    from distllm_env.view import ClusterView

    original = ClusterView.static_cost

    def finite_static_cost(self, request):     # the pre-issue-9 cost: blind to reachability
        cost = original(self, request)
        return type(cost)(fixed_s=np.where(np.isfinite(cost.fixed_s), cost.fixed_s, 0.0),
                          per_block_s=np.where(np.isfinite(cost.per_block_s), cost.per_block_s, 0.0))

    monkeypatch.setattr(ClusterView, "static_cost", finite_static_cost)
    offered_by_cost = masked_in = 0
    for seed in range(6):
        env = gym.make("distllm/RequestRouting-v0", scenario=island, config={"placement": "random"})
        env.reset(seed=seed)
        u = env.unwrapped
        assert not u.view.reachable(0)[3] and u.view.reachable(0)[:3].all()
        done = u.request is None
        while not done:
            req = u.request
            found = u.view.k_cheapest(req.client, u.config["K"], u.view.static_cost(req), req.client_blocks)
            offered_by_cost += sum(any(h.server == 3 for h in r.hops) for r, _ in found)
            mask = u._current_mask()
            assert mask.any()
            for k in np.flatnonzero(mask):
                assert not any(h.server == 3 for h in u._cands.routes[k].hops)
                masked_in += 1
            _, _, done, _, _ = env.step(int(np.flatnonzero(mask)[-1]))
        recs = u.records
        assert len(recs) == island.workload.num_requests and all(r is not None for r in recs)
        assert not any(r.reason == "unreachable" for r in recs)
        assert all(r.completed == math.isfinite(r.completion_s) for r in recs)
    assert offered_by_cost > 0 and masked_in > 0      # the patched cost does offer such chains


def test_cg_bp_r_max_counts_only_reachable_servers(island):
    """R_max = ⌊(Σ_j M_j − s_m·(L + |V_s|)) / (s_c·(L + |V_s|))⌋ over the servers some client reaches:
    the lone server 3 (excluded from planning) adds neither memory nor count."""
    from distllm_env.baselines.cg_bp import r_max, sessions_rule

    inst = build_instance(island, 0)
    mem = [int(m) for m in inst.memory_bytes]
    s_m, s_c, L = int(inst.block_bytes), int(inst.kv_block_bytes), int(inst.num_blocks)
    want = (sum(mem[:3]) - s_m * (L + 3)) // (s_c * (L + 3))
    with_lone = (sum(mem) - s_m * (L + 4)) // (s_c * (L + 4))
    assert want != with_lone                    # the island server's memory would change the bound
    assert r_max(inst) == want
    assert sessions_rule(inst).r_max == want

"""ws-rr-load: WS-RR plus the expected server contention per hop (issue 11 item 5;
baselines/ws_rr_load.py, docs/baselines.md "WS-RR-load")."""

from __future__ import annotations

import numpy as np
import pytest

from distllm_env import simulate
from distllm_env.baselines.ws_rr_load import WSRRLoadRouter
from distllm_env.errors import ScenarioError
from distllm_env.registry import family_of, make_routing
from distllm_env.simulator import new_simulation
from distllm_env.workload import Request

from live_helpers import instance_and_placement, tiny_spec

#: petals-swarm with PETALS-like serial servers and a fixed CG-BP plan (docs/baselines.md)
SERIAL = ["simulator.server_model=serial", "policy_defaults.options.cg-bp.arrival_rate_per_s=0.5"]


def _rows(res) -> list[dict]:
    """Per-request rows without the measured routing wall time."""
    return [{k: v for k, v in row.items() if "algorithm" not in k and not k.endswith("_wall_s")}
            for row in res.rows(json_route=True)]


def test_registered_with_the_proposed_family():
    router = make_routing("ws-rr-load")
    assert isinstance(router, WSRRLoadRouter) and router.weight == 1.0 and router.last_hop_s == 1e-3
    assert family_of("cg-bp", "ws-rr-load") == "proposed" == family_of("cg-bp", "ws-rr")


@pytest.mark.parametrize("option, value", [("weight", -1.0), ("weight", float("nan")), ("weight", "1"),
                                           ("last_hop_s", -0.5), ("last_hop_s", True)])
def test_bad_options_name_the_field(option, value):
    with pytest.raises(ScenarioError) as exc:
        make_routing("ws-rr-load", None, {option: value})
    assert exc.value.path == f"policy_defaults.options.ws-rr-load.{option}"


def test_identical_to_ws_rr_under_independent_servers():
    """paper-clustered (independent servers, the published semantics): the term is 0, same records."""
    a = simulate("paper-clustered", "cg-bp", "ws-rr", seed=1)
    b = simulate("paper-clustered", "cg-bp", "ws-rr-load", seed=1)
    assert len(a.records) == 100 and _rows(a) == _rows(b)


@pytest.mark.parametrize("model", ["serial", "batched"])
def test_no_contention_means_the_ws_rr_static_optimum(model):
    """Arrivals far apart (every session has ended before the next arrives): no active session, no
    queued work, so every route is WS-RR's — the statically cheapest chain."""
    over = [f"simulator.server_model={model}", "workload.arrival_rate_per_s=0.0005", "workload.num_requests=15"]
    a = simulate("petals-swarm", "cg-bp", "ws-rr", seed=3, overrides=over)
    b = simulate("petals-swarm", "cg-bp", "ws-rr-load", seed=3, overrides=over)
    assert max(r.start_s for r in b.records) > 0
    ends = sorted((r.arrival_s, r.completion_s) for r in b.records)
    assert all(e0[1] < e1[0] for e0, e1 in zip(ends, ends[1:])), "the scenario must have no overlap"
    assert _rows(a) == _rows(b)
    assert all(r.completed for r in b.records)


def test_weight_zero_routes_as_ws_rr_under_serial():
    over = SERIAL + ["workload.arrival_rate_per_s=0.25", "workload.num_requests=80"]
    a = simulate("petals-swarm", "cg-bp", "ws-rr", seed=0, overrides=over)
    b = simulate("petals-swarm", "cg-bp", WSRRLoadRouter(weight=0.0), seed=0, overrides=over)
    assert _rows(a) == _rows(b)


def test_beats_ws_rr_on_a_contended_serial_swarm():
    """petals-swarm, serial servers, λ = 0.25/s (half of the capacity measured in docs/baselines.md):
    static WS-RR piles the clients onto the largest spans; the load term spreads them."""
    over = SERIAL + ["workload.arrival_rate_per_s=0.25", "workload.num_requests=200"]
    for seed in (0, 1):
        a = simulate("petals-swarm", "cg-bp", "ws-rr", seed=seed, overrides=over)
        b = simulate("petals-swarm", "cg-bp", "ws-rr-load", seed=seed, overrides=over)
        assert sum(r.completed for r in a.records) == sum(r.completed for r in b.records) == 200
        assert b.summary["mean_per_token_time_s"] < 0.5 * a.summary["mean_per_token_time_s"], seed
        servers = lambda res: {h.server for r in res.records for h in r.route.hops}  # noqa: E731
        assert len(servers(b)) > len(servers(a))


def test_contention_term_by_hand_on_a_serial_chain():
    """tiny, serial, 3 blocks per server: one session of l = 30 holds chain 0→1→2.  For the next
    request (l = 30) an edge into server j with m blocks costs 30·n_j·m·τ_j + queued_work_s(j) more:
    n_j = 1 on servers 0, 1, 2 and 0 on server 3 (which nobody uses, so nothing is queued there)."""
    inst, presult = instance_and_placement(tiny_spec(server_model="serial"))
    reqs = [Request(id=i, client=0, arrival_s=0.001 * i, prompt_tokens=10, output_tokens=30) for i in range(2)]
    sim = new_simulation(inst, presult, reqs)
    router = WSRRLoadRouter(weight=2.0)
    sim.commit(sim.next_request(), sim.view.route_from_chain([0, 1, 2]))
    req = sim.next_request()
    view = sim.view
    assert [view.active_sessions(j) for j in range(4)] == [1, 1, 1, 0]
    assert view.queued_work_s(3) == 0.0
    dag = view.feasible_dag(0, 0)
    got = router.contention_s(req, view, dag)
    tau = inst.tau_decode_s
    for e, (j, m) in enumerate(zip(dag.edge_dst_server, dag.edge_blocks)):
        n = 1 if j in (0, 1, 2) else 0
        assert got[e] == pytest.approx(2.0 * (30 * n * m * tau[j] + view.queued_work_s(j)), rel=1e-12)
    assert (got[dag.edge_dst_server == 3] == 0).all() and (got[dag.edge_dst_server != 3] > 0).all()


def test_batched_term_is_zero_alone_and_grows_with_the_batch():
    inst, presult = instance_and_placement(tiny_spec(server_model="batched"))
    reqs = [Request(id=i, client=0, arrival_s=0.001 * i, prompt_tokens=10, output_tokens=30) for i in range(9)]
    sim = new_simulation(inst, presult, reqs)
    router, terms = WSRRLoadRouter(), []
    route = sim.view.route_from_chain([0, 1, 2])
    while (req := sim.next_request()) is not None:
        dag = sim.view.feasible_dag(0, 0)
        extra = router.contention_s(req, sim.view, dag)
        queued = np.array([sim.view.queued_work_s(j) for j in dag.edge_dst_server])
        assert (extra >= queued - 1e-15).all() and np.isfinite(extra).all()
        terms.append(extra - queued)
        sim.commit(req, route)
    assert not terms[0].any()                         # nobody there: exactly WS-RR's cost
    assert all((b >= a - 1e-12).all() for a, b in zip(terms, terms[1:]))
    assert all(r.completed for r in sim.finished_records())

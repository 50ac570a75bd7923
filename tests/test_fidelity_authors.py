"""``fidelity: authors-code``: the four readings of the authors' published simulator (arXiv 2512.21884
code) where it differs from docs/contracts.md, each pinned on a hand-made instance where the two modes
give different answers (docs/fidelity.md "Fidelity modes")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distllm_env.baselines.cg_bp import CGBPPlacement, r_max, sessions_rule
from distllm_env.baselines.petals import PetalsRouter
from distllm_env.chains import ChainDAG, HopCost
from distllm_env.errors import ScenarioError
from distllm_env.instance import build_instance, round_half_up
from distllm_env.placement import CachePolicy, Placement, PlacementResult
from distllm_env.reproduce import table3
from distllm_env.scenario import load_scenario, parse_scenario
from distllm_env.scenario.fidelity import AUTHORS_CODE, DEFAULT_FIDELITY, FidelitySpec
from distllm_env.simulator import Simulation
from distllm_env.workload import Request

from tests.conftest import preset_dict

TINY_250MB = [f"servers.{j}.memory_gb=0.25" for j in range(4)]


# -- the scenario field -----------------------------------------------------------------------------------

def test_fidelity_field_modes_and_per_reading_mapping():
    assert load_scenario("tiny").fidelity == DEFAULT_FIDELITY
    assert load_scenario("tiny", ["fidelity=contracts"]).fidelity == DEFAULT_FIDELITY
    sc = load_scenario("tiny", ["fidelity=authors-code"])
    assert sc.fidelity == AUTHORS_CODE
    assert (sc.fidelity.petals_penalty, sc.fidelity.t1_allocation_delay, sc.fidelity.client_node,
            sc.fidelity.path_ties) == ("session-count", False, "off-servers", "first-finalised")
    # one reading on its own, the others stay at the mode's values
    d = preset_dict("tiny")
    d["fidelity"] = {"path_ties": "first-finalised"}
    assert parse_scenario(d).fidelity == FidelitySpec(path_ties="first-finalised")
    d["fidelity"] = {"mode": "authors-code", "t1_allocation_delay": True}
    f = parse_scenario(d).fidelity
    assert f.t1_allocation_delay is True and f.petals_penalty == "session-count"


@pytest.mark.parametrize("value,path", [
    ("authors", "fidelity"),
    ({"mode": "exact"}, "fidelity.mode"),
    ({"path_ties": "random"}, "fidelity.path_ties"),
    ({"t1_allocation_delay": "no"}, "fidelity.t1_allocation_delay"),
    ({"petal_penalty": "session-count"}, "fidelity.petal_penalty"),
    (3, "fidelity"),
])
def test_fidelity_field_rejects_bad_values_naming_the_field(value, path):
    d = preset_dict("tiny")
    d["fidelity"] = value
    with pytest.raises(ScenarioError) as e:
        parse_scenario(d)
    assert e.value.path == path


# -- reading 1: PETALS' 10 s penalty, a session count compared with == -------------------------------------

def _petals_state(scenario_overrides=()):
    """s0 hosts [0,8), s1 and s2 [0,4), s3 [0,8).  A pool of l_in + l_out = 52 tokens per block holds
    exactly one full-span session: ⌊pool/(m_j·s_c)⌋ = 1 on every server.  Two sessions s1→s0 and
    s2→s0 each reserve s0's blocks 4..7 only, so s0 holds 2 sessions (> its nominal 1) and its pool
    is full (0 free bytes); s1 and s2 hold 1 session each; s3 is idle."""
    inst = build_instance(load_scenario("tiny", list(TINY_250MB) + list(scenario_overrides)), 0)
    sc = inst.scenario
    assert sc.max_prompt_tokens + sc.max_output_tokens == 52
    placement = Placement((0, 0, 0, 0), (8, 4, 4, 8), 8)
    reqs = [Request(i, 0, i * 1e-3, sc.max_prompt_tokens, sc.max_output_tokens) for i in range(3)]
    sim = Simulation(inst, PlacementResult(placement, CachePolicy.parse("fixed_pool(52)")), reqs,
                     reservation="published", backoff=False)
    for chain in ((1, 0), (2, 0)):
        req = sim.next_request()
        sim.commit(req, sim.view.route_from_chain(chain))
    req = sim.next_request()
    return sim, req


def test_published_exact_penalty_skips_a_server_holding_more_sessions_than_its_pool():
    sim, req = _petals_state()
    view = sim.view
    assert [view.active_sessions(j) for j in range(4)] == [2, 1, 1, 0]
    assert view.free_bytes(0) == 0 and view.free_bytes(3) > 0
    # ⌊pool/(m_j·s_c)⌋ − active = 1 − 2, 1 − 1, 1 − 1, 1 − 0: only s1 and s2 hit exactly 0
    assert PetalsRouter._pool_exhausted(view).tolist() == [False, True, True, False]
    # `published` (free bytes): s0 is full, so the idle s3 wins (0.074 s vs 10.074 s)
    assert PetalsRouter(variant="published").route(req, view, None).servers == (3,)
    # `published-exact`: s0 is not penalised; s0 and s3 tie at 0.074 s (same RTT, τ, span) and the
    # lowest index keeps s0
    assert PetalsRouter(variant="published-exact").route(req, view, None).servers == (0,)


def test_petals_penalty_follows_the_scenario_fidelity_by_default():
    sim, req = _petals_state()
    assert PetalsRouter().route(req, sim.view, None).servers == (3,)
    sim, req = _petals_state(["fidelity.petals_penalty=session-count"])
    assert PetalsRouter().route(req, sim.view, None).servers == (0,)
    # an explicit variant wins over the scenario's reading
    assert PetalsRouter(variant="published").route(req, sim.view, None).servers == (3,)


def test_published_exact_is_a_known_variant():
    assert "published-exact" in PetalsRouter.VARIANTS
    with pytest.raises(ScenarioError, match="variant"):
        PetalsRouter(variant="exact")


# -- reading 2: |R| with and without the allocation delay in T₁ ---------------------------------------------

def test_sessions_rule_t1_with_and_without_the_allocation_delay():
    inst = build_instance(load_scenario("tiny", ["simulator.allocation_delay_s.proposed=60",
                                                 "servers.0.memory_gb=4", "servers.1.memory_gb=4"]), 0)
    lam = 0.5
    with_delay = sessions_rule(inst, lam, t1_includes_allocation_delay=True)
    without = sessions_rule(inst, lam, t1_includes_allocation_delay=False)
    # the delay enters T₁ additively (a lone request waits it once before it starts)
    assert with_delay.t1_s == pytest.approx(without.t1_s + 60.0, abs=1e-9)
    # hand-computed T₁ without it: s0 (4 GB) hosts all 8 blocks; initial delay 0.020 + prefill
    # (RTT 0.040 + 0.1 ms·20 + 10 ms) + 8·(0.01 ms·20 + 5 ms) = 0.0936, + 31 tokens · (0.040 + 0.010 + 8·0.002)
    assert without.t1_s == pytest.approx(0.020 + 0.0936 + 31 * 0.066, abs=1e-12)
    assert without.allocation_delay_s == 0.0 and with_delay.allocation_delay_s == 60.0
    rmax = r_max(inst)
    for rule in (with_delay, without):
        x = lam * rule.t1_s
        assert rule.raw == round_half_up(x + math.sqrt(x))
        assert rule.sessions <= min(rule.raw, rmax)
    # λT₁ = 31.0798 → round(31.0798 + 5.5749) = 37; without: λT₁ = 1.0798 → round(1.0798 + 1.0391) = 2
    assert with_delay.raw == 37 and without.raw == 2
    assert rmax >= 37 and (with_delay.sessions, without.sessions) == (37, 2)
    # the same through the scenario field and through the cg-bp option
    authors = build_instance(inst.scenario.with_overrides(["fidelity=authors-code"]), 0)
    assert sessions_rule(authors, lam).t1_s == without.t1_s
    assert sessions_rule(inst, lam).t1_s == with_delay.t1_s
    _, diag = CGBPPlacement(arrival_rate_per_s=lam, t1_includes_allocation_delay=False).solve(inst)
    assert diag["t1_s"] == without.t1_s and diag["sessions"] == 2
    with pytest.raises(ScenarioError, match="t1_includes_allocation_delay"):
        CGBPPlacement(t1_includes_allocation_delay="no")


# -- reading 3: the client's node ------------------------------------------------------------------------------

def _sampled(fidelity: str) -> dict:
    d = preset_dict("tiny")
    d["servers"] = {"count": 4, "gpu_mix": {"toy-gpu": 1.0}, "memory_gb": 0.25}
    d["clients"] = {"count": 1}
    d["fidelity"] = fidelity
    return d


def test_client_off_server_nodes_under_authors_code():
    # 5 nodes, 4 servers on distinct nodes: the published code's client can only be the fifth node
    contracts, authors = parse_scenario(_sampled("contracts")), parse_scenario(_sampled("authors-code"))
    on_server = 0
    for seed in range(12):
        a = build_instance(authors, seed)
        free = set(range(a.topology.num_nodes)) - {s.node_index for s in a.servers}
        assert len(free) == 1 and a.clients[0].node_index in free
        c = build_instance(contracts, seed)
        # the servers are the same draw in both modes (the client is drawn after them)
        assert [s.node_index for s in c.servers] == [s.node_index for s in a.servers]
        on_server += c.clients[0].node_index in {s.node_index for s in c.servers}
    assert on_server > 0      # contracts mode does put the client on a server's node


def test_client_off_servers_without_a_free_node_is_an_error():
    d = _sampled("authors-code")
    d["servers"]["count"] = 5
    with pytest.raises(ScenarioError) as e:
        build_instance(parse_scenario(d), 0)
    assert e.value.path == "clients.count"


# -- reading 4: exact-tie shortest chains -------------------------------------------------------------------

def _tie_dag(ties: str) -> tuple[ChainDAG, HopCost]:
    # s0 hosts [0,4); s2 [0,2) → s1 [2,4).  dist(s0) = 1.0, dist(s2) = 0.25, dist(s1) = 0.5; leaving
    # costs 0 from s0 and 0.5 from s1: both chains cost exactly 1.0 (binary fractions, no rounding)
    dag = ChainDAG(Placement((0, 2, 0), (4, 2, 2), 4), ties=ties)
    cost = HopCost(fixed_s=np.array([1.0, 0.25, 0.25]), per_block_s=np.zeros(3), sink_s=np.array([0.0, 0.5, 0.0]))
    return dag, cost


def test_exact_tie_lowest_index_vs_first_finalised():
    dag, cost = _tie_dag("lowest-index")
    route, c = dag.shortest(cost)
    assert route.servers == (0,) and c == 1.0
    dag, cost = _tie_dag("first-finalised")
    route, c = dag.shortest(cost)
    # Dijkstra finalises s1 (0.5) before s0 (1.0), so s1 relaxes the sink first and keeps it
    assert route.servers == (2, 1) and c == 1.0
    with pytest.raises(ValueError, match="ties"):
        ChainDAG(Placement((0,), (4,), 4), ties="random")


def _matlab_dijkstra(dag: ChainDAG, cost: HopCost, num_servers: int) -> tuple[tuple[int, ...], float]:
    """A textbook Dijkstra on the server graph, as the published code runs it: node 0 the client,
    1..N the servers by index, N+1 the sink; the next node is the first unvisited one of least
    distance; relaxation with strict <."""
    w = dag.edge_weights(cost)
    N = num_servers
    adj: dict[int, list[tuple[int, float]]] = {}
    for e in range(dag.num_edges):
        s = -1 if dag.edge_src[e] == dag.n else int(dag.servers[dag.edge_src[e]])
        t = int(dag.servers[dag.edge_dst[e]])
        adj.setdefault(s + 1, []).append((t + 1, float(w[e])))
    for k in np.flatnonzero(dag.to_sink):
        j = int(dag.servers[k])
        adj.setdefault(j + 1, []).append((N + 1, float(cost.sink_s[j])))
    dist = [math.inf] * (N + 2)
    pred = [-1] * (N + 2)
    dist[0] = 0.0
    seen = [False] * (N + 2)
    for _ in range(N + 2):
        u = min((i for i in range(N + 2) if not seen[i]), key=lambda i: dist[i])   # first of the least
        if math.isinf(dist[u]):
            break
        seen[u] = True
        for v, wt in adj.get(u, []):
            if dist[u] + wt < dist[v]:
                dist[v], pred[v] = dist[u] + wt, u
    chain, v = [], pred[N + 1]
    while v > 0:
        chain.append(v - 1)
        v = pred[v]
    return tuple(chain[::-1]), dist[N + 1]


def test_first_finalised_agrees_with_a_textbook_dijkstra_on_tie_heavy_instances():
    # integer costs (like Repetita's integer µs delays summed along paths) make exact ties common
    rng = np.random.default_rng(5)
    differs = 0
    for _ in range(300):
        L, N = 6, int(rng.integers(3, 8))
        counts = rng.integers(1, L + 1, size=N)
        starts = np.array([int(rng.integers(0, L - c + 1)) for c in counts])
        starts[0], counts[0] = 0, int(rng.integers(1, L + 1))
        placement = Placement(tuple(int(s) for s in starts), tuple(int(c) for c in counts), L)
        if placement.uncovered_ranges():
            continue
        cost = HopCost(fixed_s=rng.integers(1, 4, size=N).astype(float),
                       per_block_s=rng.integers(0, 2, size=N).astype(float),
                       sink_s=rng.integers(0, 3, size=N).astype(float))
        dag = ChainDAG(placement, ties="first-finalised")
        route, c = dag.shortest(cost)
        ref_chain, ref_cost = _matlab_dijkstra(dag, cost, N)
        assert c == ref_cost and route.servers == ref_chain
        differs += ChainDAG(placement).shortest(cost)[0].servers != ref_chain
    assert differs > 0          # the two tie rules do disagree on such instances


def test_path_ties_reach_the_view_from_the_scenario():
    placement = Placement((0, 4, 0, 4), (4, 4, 4, 4), 8)
    for fid, rule in (("contracts", "lowest-index"), ("authors-code", "first-finalised")):
        inst = build_instance(load_scenario("tiny", [f"fidelity={fid}"]), 0)
        sim = Simulation(inst, PlacementResult(placement, CachePolicy()), [Request(0, 0, 0.0, 20, 32)],
                         reservation="published", backoff=False)
        assert sim.view.feasible_dag(0).ties == rule


# -- reproduce --------------------------------------------------------------------------------------------

def test_reproduce_table3_fidelity_switch():
    base = table3([0])
    assert table3([0], fidelity="contracts") == base
    authors = table3([0], fidelity="authors-code")
    # T₁ without the 60 s allocation delay gives a smaller |R| in every proposed cell
    for a, b in zip(authors["rows"], base["rows"]):
        if a["policy"] == "proposed":
            assert a["proposed_sessions"] < b["proposed_sessions"]
    with pytest.raises(ScenarioError):
        table3([0], fidelity="exact")

"""Scenario loading, presets, overrides and validation errors (docs/contracts.md §3–4)."""

import math
import pickle

import numpy as np
import pytest

from distllm_env.errors import ScenarioError
from distllm_env.instance import build_instance, validate_scenario
from distllm_env.scenario import apply_overrides, list_presets, load_scenario
from tests.conftest import preset_dict


def test_all_presets_load_and_build():
    names = list_presets()
    for required in ("paper-clustered", "paper-abovenet", "paper-bellcanada", "paper-gtsce", "petals-swarm", "tiny"):
        assert required in names
    for name in names:
        sc = load_scenario(name)
        inst = build_instance(sc, 0)
        assert inst.num_servers >= 1 and inst.num_clients >= 1
        assert np.all(np.isfinite(inst.token_cost_s).any(axis=1))


def test_paper_clustered_values():
    sc = load_scenario("paper-clustered")
    inst = build_instance(sc, 0)
    gpus = [s.gpu.name for s in inst.servers]
    assert gpus == ["A100-80GB"] * 2 + ["MIG-1g.10gb"] * 7
    assert [s.memory_bytes for s in inst.servers[:3]] == [int(86.13e9), int(86.13e9), int(9.1e9)]
    # client in cluster 0: RTT 100 ms to every server; t_cj = RTT + 50 ms
    assert np.allclose(inst.rtt_s, 0.100)
    assert np.allclose(inst.token_cost_s, 0.150)
    # t^I_cj(20) = RTT + 55 ms
    assert np.allclose(inst.prefill_comm_s(20), 0.155)
    assert inst.initial_delay_s == pytest.approx(0.100)
    assert sc.simulator.reservation == "published" and sc.simulator.backoff
    assert dict(sc.simulator.allocation_delay_s) == {"petals": 250.0, "proposed": 60.0}
    assert (sc.workload.arrival_rate_per_s, sc.workload.num_requests) == (0.5, 100)
    assert (sc.workload.prompt_tokens.value, sc.workload.output_tokens.value) == (20, 128)
    # clients in cluster 1: 5 ms to the A100s, 100 ms to the MIGs
    inst1 = build_instance(load_scenario("paper-clustered", ["clients.0.node=c1n0"]), 0)
    assert np.allclose(inst1.rtt_s[0, :2], 0.005) and np.allclose(inst1.rtt_s[0, 2:], 0.100)


@pytest.mark.parametrize("name,nodes,servers,a100", [("paper-abovenet", 23, 9, 2), ("paper-bellcanada", 48, 19, 4),
                                                     ("paper-gtsce", 149, 60, 12)])
def test_paper_scattered_presets_draw_servers_per_seed(name, nodes, servers, a100):
    sc = load_scenario(name)
    seen_nodes = set()
    for seed in range(3):
        inst = build_instance(sc, seed)
        assert inst.topology.num_nodes == nodes
        assert inst.num_servers == servers
        assert sum(s.gpu.name == "A100-80GB" for s in inst.servers) == a100
        assert len({s.node for s in inst.servers}) == servers          # distinct nodes
        assert inst.num_clients == 1
        seen_nodes.add(tuple(s.node for s in inst.servers))
        # t_cj = RTT + 100 ms; t^I = RTT + 0.7049·20 + 67 ms
        assert np.allclose(inst.token_cost_s - inst.rtt_s, 0.100)
        assert np.allclose(inst.prefill_comm_s(20) - inst.rtt_s, (0.7049 * 20 + 67) * 1e-3)
    assert len(seen_nodes) == 3                                          # drawn per seed
    # same seed → same instance
    a, b = build_instance(sc, 7), build_instance(sc, 7)
    assert [s.node for s in a.servers] == [s.node for s in b.servers]


def test_overrides_set_values_list_items_and_dotted_keys():
    sc = load_scenario("paper-clustered", ["workload.arrival_rate_per_s=0.1", "workload.output_tokens=64",
                                           "servers.2.gpu=A100-80GB"])
    assert sc.workload.arrival_rate_per_s == 0.1 and sc.workload.output_tokens.value == 64
    assert sc.servers[2].gpu == "A100-80GB"
    assert sc.overrides == ("workload.arrival_rate_per_s=0.1", "workload.output_tokens=64", "servers.2.gpu=A100-80GB")
    assert sc.hash != load_scenario("paper-clustered").hash
    sc2 = load_scenario("paper-gtsce", ["servers.gpu_mix.MIG-1g.10gb=0.5", "servers.gpu_mix.A100-80GB=0.5"])
    assert dict(sc2.servers.gpu_mix) == {"A100-80GB": 0.5, "MIG-1g.10gb": 0.5}
    # a dict value replaces a whole section entry
    sc3 = load_scenario("tiny", ["workload.output_tokens={dist: uniform, low: 8, high: 16}"])
    assert (sc3.workload.output_tokens.low, sc3.workload.output_tokens.high) == (8, 16)
    # overrides compose on an already-overridden scenario
    assert sc.with_overrides(["workload.num_requests=7"]).overrides[-1] == "workload.num_requests=7"


def test_scenario_pickles_and_keeps_its_hash():
    sc = load_scenario("paper-abovenet", ["workload.num_requests=10"])
    back = pickle.loads(pickle.dumps(sc))
    assert back.hash == sc.hash and back.overrides == sc.overrides


def _with(d, path, value):
    parts = path.split(".")
    node = d
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value
    return d


def test_parsing_builds_no_instance_and_build_instance_names_the_node(tiny_dict):
    sc = load_scenario(_with(tiny_dict, "servers.0.node", "c9n9"))
    with pytest.raises(ScenarioError) as info:
        build_instance(sc, 0)
    assert info.value.path == "servers.0.node" and "not in topology" in str(info.value)


MALFORMED = [
    # (mutation path, value, field named in the error, fragment of the message)
    ("servers.0.gpu", "B200", "servers.0.gpu", "unknown GPU"),
    ("model", "GPT-5", "model", "unknown model"),
    ("servers.0.memory_gb", -3, "servers.0.memory_gb", "> 0"),
    ("servers.0.memory_gb", float("nan"), "servers.0.memory_gb", "finite"),
    ("servers.0.node", "c9n9", "servers.0.node", "not in topology"),
    ("models.toy-8L.num_blocks", 0, "models.toy-8L.num_blocks", "≥ 1"),
    ("workload.prompt_tokens", 5000, "workload.prompt_tokens", "exceeds"),
    ("workload.output_tokens", 2040, "workload.output_tokens", "exceeds"),
    ("workload.colour", "blue", "workload.colour", "unknown key"),
    ("workload.num_requests", "many", "workload.num_requests", "integer"),
    ("workload.num_requests", True, "workload.num_requests", "integer"),
    ("simulator.reservation", "fifo", "simulator.reservation", "calendar"),
    ("simulator.allocation_delay_s", {"learned": 3}, "simulator.allocation_delay_s.learned", "family"),
    ("clients.0.device", "toaster", "clients.0.device", "unknown device"),
    ("topology.clusters.sizes", [], "topology.clusters.sizes", "at least one"),
    ("network.token_overhead_ms", -1, "network.token_overhead_ms", "≥ 0"),
    ("workload.arrival", "burst", "workload.arrival", "poisson"),
    ("gpus.toy-gpu.calibration.toy-8L.tau_decode_ms", 0, "gpus.toy-gpu.calibration.toy-8L.tau_decode_ms", "> 0"),
    ("servers", [], "servers", "at least one"),
    ("flavour", "x", "flavour", "unknown key"),
]


@pytest.mark.parametrize("path,value,field,fragment", MALFORMED, ids=[m[0] + "=" + repr(m[1]) for m in MALFORMED])
def test_malformed_scenarios_name_the_field(tiny_dict, path, value, field, fragment):
    # validate_scenario = load + the seed-0 instance (node names and connectivity are checked there)
    with pytest.raises(ScenarioError) as info:
        validate_scenario(_with(tiny_dict, path, value))
    assert info.value.path == field
    assert fragment in str(info.value)


def test_client_disconnected_from_every_server(tmp_path, tiny_dict):
    graph = tmp_path / "split.graph"
    graph.write_text("NODES 3\nlabel x y\n0_a 0 0\n1_b 0 0\n2_island 0 0\n\nEDGES 2\nlabel src dest weight bw delay\n"
                     "edge_0 0 1 10 1 1000\nedge_1 1 0 10 1 1000\n")
    d = tiny_dict
    d["topology"] = {"repetita": str(graph)}
    d["servers"] = [{"gpu": "toy-gpu", "node": "0_a"}, {"gpu": "toy-gpu", "node": "1_b"}]
    d["clients"] = [{"node": "2_island"}]
    sc = load_scenario(d)   # parsing builds no instance ...
    with pytest.raises(ScenarioError) as info:
        build_instance(sc, 0)   # ... the instance build checks connectivity
    assert info.value.path == "clients.0.node" and "disconnected" in str(info.value)


def test_unknown_override_paths_are_errors():
    with pytest.raises(ScenarioError) as info:
        load_scenario("tiny", ["workload.colour=blue"])
    assert info.value.path == "workload.colour"
    with pytest.raises(ScenarioError, match="index 9 out of range"):
        load_scenario("tiny", ["servers.9.gpu=toy-gpu"])
    with pytest.raises(ScenarioError, match="PATH=VALUE"):
        load_scenario("tiny", ["workload.num_requests"])
    with pytest.raises(ScenarioError, match="cannot set"):
        load_scenario("tiny", ["model.name=x"])
    with pytest.raises(ScenarioError, match="unknown scenario preset"):
        load_scenario("no-such-preset")


def test_apply_overrides_leaves_the_input_untouched(tiny_dict):
    before = preset_dict("tiny")
    out = apply_overrides(tiny_dict, ["workload.num_requests=3"])
    assert out["workload"]["num_requests"] == 3
    assert tiny_dict == before


def test_server_sampler_counts_round_half_up(tiny_dict):
    d = preset_dict("paper-abovenet")
    d["servers"]["fraction_of_nodes"] = 0.5          # 11.5 → 12 servers
    d["servers"]["gpu_mix"] = {"A100-80GB": 0.125, "MIG-1g.10gb": "rest"}   # 1.5 → 2 A100
    inst = build_instance(load_scenario(d), 0)
    assert inst.num_servers == 12
    assert sum(s.gpu.name == "A100-80GB" for s in inst.servers) == 2


def test_trace_workload_uses_the_published_gaps():
    sc = load_scenario("paper-clustered", ["workload.arrival=trace", "workload.trace=published-0.1"])
    from distllm_env.workload import generate_requests

    reqs = generate_requests(build_instance(sc, 0), 0)
    assert len(reqs) == 100
    assert reqs[0].arrival_s == 0.0
    assert reqs[1].arrival_s == pytest.approx(30.6936992850885)
    assert math.isclose(reqs[-1].arrival_s, 1041.357, rel_tol=1e-4)
    with pytest.raises(ScenarioError, match="holds 50 requests"):
        load_scenario("paper-clustered", ["workload.arrival=trace", "workload.trace=published-0.5"])


def test_csv_trace_with_lengths_and_clients(tmp_path, tiny_dict):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens,client\n0,10,5,0\n0.5,12,6,1\n2,30,7,0\n")
    d = tiny_dict
    d["clients"] = [{"node": "c0n0"}, {"node": "c1n0"}]
    d["workload"] = {"arrival": "trace", "trace": str(trace)}
    sc = load_scenario(d)
    from distllm_env.workload import generate_requests

    reqs = generate_requests(build_instance(sc, 0), 0)
    assert [(r.arrival_s, r.prompt_tokens, r.output_tokens, r.client) for r in reqs] == [
        (0.0, 10, 5, 0), (0.5, 12, 6, 1), (2.0, 30, 7, 0)]
    assert sc.max_prompt_tokens == 30 and sc.max_output_tokens == 7
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n1,10,5\n0,10,5\n")
    load_trace_cache_clear()
    with pytest.raises(ScenarioError, match="non-decreasing"):
        load_scenario(d)


def load_trace_cache_clear():
    from distllm_env.traces import load_trace

    load_trace.cache_clear()

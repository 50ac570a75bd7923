"""Topology loaders and generators; RTT = 2 × shortest-path one-way delay."""

import numpy as np
import pytest

from distllm_env.errors import ScenarioError
from distllm_env.topology import (FIBRE_KM_PER_MS, clustered_topology, geo_topology, great_circle_km,
                                  load_repetita, parse_repetita)


@pytest.mark.parametrize("name,nodes,edges", [("Abvt", 23, 62), ("Bellcanada", 48, 130), ("GtsCe", 149, 386)])
def test_shipped_repetita_files(name, nodes, edges):
    t = load_repetita(name)
    assert t.num_nodes == nodes and len(t.edge_src) == edges
    rtt = t.rtt_s(range(nodes))
    assert np.all(np.isfinite(rtt))                      # all three are connected
    assert np.allclose(rtt, rtt.T)                       # every link appears both ways
    assert np.all(np.diag(rtt) == 0)
    # RTT never exceeds twice any direct link's delay
    for s, d, w in zip(t.edge_src, t.edge_dst, t.edge_delay_s):
        assert rtt[s, d] <= 2 * w + 1e-12


def test_repetita_rtt_is_twice_the_shortest_path_delay():
    text = """NODES 4
label x y
0_a 0 0
1_b 0 0
2_c 0 0
3_d 0 0

EDGES 6
label src dest weight bw delay
edge_0 0 1 10 1000 1000
edge_1 1 0 10 1000 1000
edge_2 1 2 10 1000 2000
edge_3 2 1 10 1000 2000
edge_4 0 2 10 1000 5000
edge_5 2 0 10 1000 5000
"""
    t = parse_repetita(text, "toy")
    rtt = t.rtt_s([0, 1, 2, 3])
    assert rtt[0, 2] == pytest.approx(2 * 3e-3)           # via node 1: 1 ms + 2 ms one way
    assert rtt[0, 1] == pytest.approx(2e-3)
    assert np.isinf(rtt[0, 3])                            # node 3 has no links
    labels = t.component_labels()
    assert labels[0] == labels[1] == labels[2] != labels[3]


def test_malformed_repetita_is_a_scenario_error():
    with pytest.raises(ScenarioError, match="Repetita"):
        parse_repetita("hello", "bad")


def test_clustered_topology_rtts():
    t = clustered_topology([1, 3, 8])
    idx = {n: i for i, n in enumerate(t.nodes)}
    rtt = t.rtt_s(range(t.num_nodes))
    assert rtt[idx["c1n1"], idx["c1n2"]] == pytest.approx(0.005)
    assert rtt[idx["c0n0"], idx["c2n5"]] == pytest.approx(0.100)
    assert rtt[idx["c1n0"], idx["c2n0"]] == pytest.approx(0.100)
    assert t.num_nodes == 12


def test_geo_delay_is_great_circle_times_route_factor():
    t = geo_topology(cities=["London", "Paris"], route_factor=1.5)
    km = great_circle_km(51.51, -0.13, 48.86, 2.35)
    assert 330 < km < 360                                   # London–Paris ≈ 344 km
    assert t.rtt_s([0], [1])[0, 0] == pytest.approx(2 * km * 1.5 / FIBRE_KM_PER_MS * 1e-3)


def test_random_geo_topology_is_connected_and_seeded():
    a = geo_topology(np.random.default_rng(3), num_nodes=200, k_nearest=2)
    b = geo_topology(np.random.default_rng(3), num_nodes=200, k_nearest=2)
    c = geo_topology(np.random.default_rng(4), num_nodes=200, k_nearest=2)
    assert a.nodes == b.nodes and np.array_equal(a.edge_delay_s, b.edge_delay_s)
    assert a.nodes != c.nodes
    assert len(set(a.component_labels())) == 1
    assert len(set(a.nodes)) == 200
    with pytest.raises(ScenarioError, match="regions"):
        geo_topology(np.random.default_rng(0), num_nodes=3, regions=["atlantis"])

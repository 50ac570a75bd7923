"""Network topologies: the Repetita loader, the paper's 3-cluster generator and a random geographic
generator.  RTT between two nodes = 2 × shortest-path one-way delay (docs/contracts.md §1).

Shortest paths are computed with scipy's Dijkstra on a sparse graph (the same result networkx
gives, at a fraction of the cost for 1,000-node topologies); :meth:`Topology.to_networkx` exports the
graph for users who want networkx.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from .cities import (EARTH_RADIUS_KM, City, _duplicate_mask, _jitter, great_circle_km, known_cities, known_regions,
                     unknown_city_message, world_cities)
from .errors import ScenarioError
from .limits import MAX_GRAPH_EDGES, MAX_TOPOLOGY_NODES, MAX_TRACE_BYTES

#: Light in optical fibre travels at about 2/3 of c ≈ 200 km per ms (refractive index ≈ 1.47).
FIBRE_KM_PER_MS = 200.0
#: Default route stretch: fibre paths are about 1.5× longer than the great circle (path inflation
#: reported by Singla et al., "The Internet at the Speed of Light", HotNets 2014).  The geo
#: generator's one-way delay is great-circle km × ROUTE_FACTOR / FIBRE_KM_PER_MS.
ROUTE_FACTOR = 1.5

REPETITA_TOPOLOGIES = ("Abvt", "Bellcanada", "GtsCe")


@dataclass(frozen=True, eq=False)
class Topology:
    """Nodes and directed links with one-way delays (seconds)."""

    name: str
    nodes: tuple[str, ...]
    edge_src: np.ndarray
    edge_dst: np.ndarray
    edge_delay_s: np.ndarray
    coordinates: np.ndarray | None = None     # (n, 2) latitude, longitude in degrees
    clusters: tuple[int, ...] | None = None   # cluster id per node (clustered topologies)
    notes: str = ""

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def index(self, node: "str | int", path: str = "node") -> int:
        """Index of a node given by name, or by integer index.

        Raises:
            ScenarioError: (path ``path``) the node name is not in the topology, or the index is out of range."""
        if isinstance(node, (int, np.integer)) and not isinstance(node, bool):
            if 0 <= int(node) < self.num_nodes:
                return int(node)
            raise ScenarioError(path, f"node index {node} out of range 0..{self.num_nodes - 1} in topology {self.name!r}")
        lookup = _node_lookup(self)
        if node in lookup:
            return lookup[node]
        sample = ", ".join(self.nodes[:6]) + (", …" if self.num_nodes > 6 else "")
        shown = repr(node) if len(repr(node)) <= 60 else repr(node)[:59] + "…"
        raise ScenarioError(path, f"node {shown} is not in topology {self.name!r} (nodes: {sample})")

    def _csr(self) -> csr_matrix:
        n = self.num_nodes
        # keep the smallest delay among parallel links
        m = csr_matrix((np.zeros(0), (np.zeros(0, int), np.zeros(0, int))), shape=(n, n))
        if len(self.edge_src):
            order = np.lexsort((self.edge_delay_s, self.edge_dst, self.edge_src))
            s, d, w = self.edge_src[order], self.edge_dst[order], self.edge_delay_s[order]
            keep = np.ones(len(s), dtype=bool)
            keep[1:] = (s[1:] != s[:-1]) | (d[1:] != d[:-1])
            # scipy's csgraph treats explicit zeros as missing edges: use a tiny positive delay
            m = csr_matrix((np.maximum(w[keep], 1e-12), (s[keep], d[keep])), shape=(n, n))
        return m

    def one_way_delay_s(self, sources: Sequence[int] | None = None) -> np.ndarray:
        """Shortest-path one-way delay from ``sources`` (default: all nodes) to every node."""
        idx = None if sources is None else np.asarray(sources, dtype=np.int64)
        d = dijkstra(self._csr(), directed=True, indices=idx)
        d[d < 1e-9] = 0.0
        return d

    def rtt_s(self, sources: Sequence[int], targets: Sequence[int] | None = None) -> np.ndarray:
        """RTT = 2 × shortest-path one-way delay, shape (len(sources), len(targets))."""
        d = self.one_way_delay_s(sources)
        if targets is not None:
            d = d[:, np.asarray(targets, dtype=np.int64)]
        return 2.0 * d

    def component_labels(self) -> np.ndarray:
        return connected_components(self._csr(), directed=True, connection="weak")[1]

    def to_networkx(self):
        """A ``networkx.DiGraph`` with ``delay_s`` edge attributes."""
        import networkx as nx

        g = nx.DiGraph(name=self.name)
        for i, name in enumerate(self.nodes):
            attrs = {}
            if self.coordinates is not None:
                attrs = {"lat": float(self.coordinates[i, 0]), "lon": float(self.coordinates[i, 1])}
            if self.clusters is not None:
                attrs["cluster"] = self.clusters[i]
            g.add_node(name, **attrs)
        for s, d, w in zip(self.edge_src, self.edge_dst, self.edge_delay_s):
            g.add_edge(self.nodes[int(s)], self.nodes[int(d)], delay_s=float(w))
        return g


@lru_cache(maxsize=64)
def _node_lookup_cached(nodes: tuple[str, ...]) -> dict:
    return {n: i for i, n in enumerate(nodes)}


def _node_lookup(topo: Topology) -> dict:
    return _node_lookup_cached(topo.nodes)


# --------------------------------------------------------------------------------------------------
# Repetita .graph files
# --------------------------------------------------------------------------------------------------

def parse_repetita(text: str, name: str = "repetita", source: str | None = None) -> Topology:
    """Parse the Repetita ``.graph`` format (NODES / EDGES sections; delays in microseconds).

    Format: repetita.info.ucl.ac.be/DataFormat.html; see distllm_env/data/topologies/SOURCE.md.
    At most ``MAX_TOPOLOGY_NODES`` nodes and ``MAX_GRAPH_EDGES`` edges (distllm_env.limits).

    Raises:
        ScenarioError: path ``topology``; the message names the file (``source``, default ``name``)
            and the line."""
    topo_name, name = name, source or name
    lines = [ln.strip() for ln in text.splitlines()]
    try:
        i = next(k for k, ln in enumerate(lines) if ln.startswith("NODES"))
        n = int(lines[i].split()[1])
        j = next(k for k, ln in enumerate(lines) if ln.startswith("EDGES"))
        m = int(lines[j].split()[1])
    except (StopIteration, IndexError, ValueError):
        raise ScenarioError("topology", f"{name}: not a Repetita .graph file (NODES/EDGES sections)") from None
    if not 0 < n <= MAX_TOPOLOGY_NODES:
        raise ScenarioError("topology", f"{name}: line {i + 1}: expected 1 to {MAX_TOPOLOGY_NODES} nodes, got {n}")
    if not 0 <= m <= MAX_GRAPH_EDGES:
        raise ScenarioError("topology", f"{name}: line {j + 1}: expected 0 to {MAX_GRAPH_EDGES} edges, got {m}")

    def bad(k: int, what: str):
        ln = lines[k] if len(lines[k]) <= 60 else lines[k][:59] + "…"
        return ScenarioError("topology", f"{name}: line {k + 1}: {what}: {ln!r}")

    nodes, coords = [], []
    for k in range(i + 2, min(i + 2 + n, len(lines))):
        parts = lines[k].split()
        try:
            if len(parts) != 3:
                raise ValueError
            lon, lat = float(parts[1]), float(parts[2])  # file gives x=longitude, y=latitude
        except ValueError:
            raise bad(k, "bad node line (expected: label x y)") from None
        nodes.append(parts[0])
        coords.append((lat, lon))
    src, dst, delay = [], [], []
    for k in range(j + 2, min(j + 2 + m, len(lines))):
        parts = lines[k].split()
        try:
            if len(parts) != 6:
                raise ValueError
            s_, d_, w = int(parts[1]), int(parts[2]), float(parts[5]) * 1e-6  # microseconds -> seconds
        except ValueError:
            raise bad(k, "bad edge line (expected: label src dest weight bw delay)") from None
        if not (0 <= s_ < n and 0 <= d_ < n):
            raise bad(k, f"edge to a missing node (nodes are numbered 0..{n - 1})")
        if not (math.isfinite(w) and w >= 0):
            raise bad(k, "edge delay must be finite and ≥ 0")
        src.append(s_)
        dst.append(d_)
        delay.append(w)
    if len(nodes) != n or len(src) != m:
        raise ScenarioError("topology", f"{name}: expected {n} nodes and {m} edges, found {len(nodes)} and {len(src)}")
    if len(set(nodes)) != n:
        raise ScenarioError("topology", f"{name}: node labels must be unique")
    return Topology(
        name=topo_name, nodes=tuple(nodes), edge_src=np.asarray(src, dtype=np.int64),
        edge_dst=np.asarray(dst, dtype=np.int64), edge_delay_s=np.asarray(delay, dtype=float),
        coordinates=np.asarray(coords, dtype=float),
        notes="Repetita (svissicchio/Repetita) conversion of an Internet Topology Zoo network; delays in µs",
    )


@lru_cache(maxsize=8)
def load_repetita(name: str) -> Topology:
    """Load a shipped Repetita topology (``Abvt``, ``Bellcanada``, ``GtsCe``) or a ``.graph`` path.

    Raises:
        ScenarioError: (path ``topology.repetita``) the file does not exist or cannot be read, is larger
            than ``MAX_TRACE_BYTES``, is not UTF-8, or is not a valid ``.graph`` file."""
    if name in REPETITA_TOPOLOGIES:
        text = resources.files("distllm_env").joinpath(f"data/topologies/{name}.graph").read_text()
        return parse_repetita(text, name)
    p = Path(name)
    if p.suffix == ".graph" and p.is_file():
        if p.stat().st_size > MAX_TRACE_BYTES:
            raise ScenarioError("topology.repetita", f"{p}: larger than {MAX_TRACE_BYTES} bytes")
        data = p.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScenarioError("topology.repetita", f"{p}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                                                     f"{exc.start})") from None
        return parse_repetita(text, p.stem, str(p))
    raise ScenarioError("topology.repetita",
                        f"unknown topology {name[:60]!r}; expected one of {list(REPETITA_TOPOLOGIES)} or a .graph file path")


# --------------------------------------------------------------------------------------------------
# The paper's clustered setting
# --------------------------------------------------------------------------------------------------

def cluster_node_name(cluster: int, member: int) -> str:
    return f"c{cluster}n{member}"


def clustered_topology(sizes: Sequence[int], intra_rtt_s: float = 0.005, inter_rtt_s: float = 0.100) -> Topology:
    """Fully meshed clusters: node ``c{k}n{i}`` is member i of cluster k.

    Links inside a cluster have one-way delay intra_rtt/2, links between clusters inter_rtt/2, so the
    RTT between two nodes is 5 ms inside a cluster and 100 ms across (the paper's clustered setting,
    docs/contracts.md §4; docs/contracts.md §1).  Bandwidth is folded into the fitted overheads (docs/model.md §4.1).

    Raises:
        ScenarioError: the cluster sizes sum to more than ``MAX_TOPOLOGY_NODES`` (path
            ``topology.clusters.sizes``).
    """
    if sum(sizes) > MAX_TOPOLOGY_NODES:
        raise ScenarioError("topology.clusters.sizes", f"{sum(sizes)} nodes in all; at most {MAX_TOPOLOGY_NODES}")
    nodes, cluster_of = [], []
    for k, size in enumerate(sizes):
        for i in range(size):
            nodes.append(cluster_node_name(k, i))
            cluster_of.append(k)
    n = len(nodes)
    cl = np.asarray(cluster_of)
    s, d = np.nonzero(~np.eye(n, dtype=bool))
    delay = np.where(cl[s] == cl[d], intra_rtt_s / 2, inter_rtt_s / 2)
    return Topology(
        name=f"clusters{tuple(sizes)}", nodes=tuple(nodes), edge_src=s.astype(np.int64),
        edge_dst=d.astype(np.int64), edge_delay_s=delay.astype(float), clusters=tuple(cluster_of),
        notes=f"fully meshed clusters, RTT {intra_rtt_s * 1e3:g} ms inside / {inter_rtt_s * 1e3:g} ms between",
    )


# --------------------------------------------------------------------------------------------------
# Random geographic topologies
# --------------------------------------------------------------------------------------------------

def geo_topology(
    rng: np.random.Generator | None = None,
    *,
    cities: Sequence[str] | None = None,
    num_nodes: int | None = None,
    regions: Sequence[str] | None = None,
    k_nearest: int = 3,
    route_factor: float = ROUTE_FACTOR,
    jitter_km: float = 50.0,
    name: str = "geo",
) -> Topology:
    """A geographic WAN: nodes at world cities, one-way delay = great-circle distance × route_factor
    / 200 km/ms.

    Either ``cities`` lists the node cities explicitly (deterministic; a city may repeat), or
    ``num_nodes`` nodes are drawn from ``rng`` among the shipped cities (optionally restricted to
    ``regions``), with repeats jittered by up to ``jitter_km`` so co-located nodes stay distinct.
    Each node links to its ``k_nearest`` nearest neighbours, and a minimum spanning tree is added so
    the graph is connected.

    Raises:
        ScenarioError: more than ``MAX_TOPOLOGY_NODES`` cities or nodes, neither ``cities`` nor
            ``num_nodes`` with ``rng``, an unknown region or city, or regions with no city (path
            ``topology.geo.<field>``).
    """
    table = world_cities()
    by_name = {c.name: c for c in table}
    if cities is not None:
        if len(cities) > MAX_TOPOLOGY_NODES:
            raise ScenarioError("topology.geo.cities", f"expected at most {MAX_TOPOLOGY_NODES} cities, got {len(cities)}")
        chosen = []
        for i, cname in enumerate(cities):
            if cname not in by_name:
                raise ScenarioError(f"topology.geo.cities.{i}", unknown_city_message(cname))
            chosen.append(by_name[cname])
        lat = np.array([c.lat for c in chosen])
        lon = np.array([c.lon for c in chosen])
        if rng is not None and jitter_km > 0:
            dup = _duplicate_mask([c.name for c in chosen])
            lat, lon = _jitter(rng, lat, lon, jitter_km, dup)
    else:
        if rng is None or num_nodes is None:
            raise ScenarioError("topology.geo", "give either 'cities' or 'num_nodes' (drawn from the seed)")
        if not 1 <= num_nodes <= MAX_TOPOLOGY_NODES:
            raise ScenarioError("topology.geo.num_nodes", f"expected 1 to {MAX_TOPOLOGY_NODES} nodes, got {num_nodes}")
        unknown = [r for r in (regions or ()) if r not in known_regions()]
        if unknown:
            raise ScenarioError("topology.geo.regions", f"unknown region(s) {unknown[:5]}; known regions: "
                                                        f"{list(known_regions())}")
        pool = [c for c in table if regions is None or c.region in regions]
        if not pool:
            raise ScenarioError("topology.geo.regions",
                                f"no shipped city in regions {list(regions or [])}; known regions: "
                                f"{sorted({c.region for c in table})}")
        idx = rng.integers(0, len(pool), size=num_nodes)
        chosen = [pool[i] for i in idx]
        lat = np.array([c.lat for c in chosen])
        lon = np.array([c.lon for c in chosen])
        dup = _duplicate_mask([c.name for c in chosen])
        lat, lon = _jitter(rng, lat, lon, jitter_km, dup)
    n = len(chosen)
    names = tuple(f"n{i}_{c.name}" for i, c in enumerate(chosen))
    dist = great_circle_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    pairs = set()
    if n > 1:
        k = max(1, min(k_nearest, n - 1))
        order = np.argsort(dist + np.eye(n) * 1e18, axis=1)[:, :k]
        for i in range(n):
            for j in order[i]:
                pairs.add((min(i, int(j)), max(i, int(j))))
        from scipy.sparse.csgraph import minimum_spanning_tree

        mst = minimum_spanning_tree(csr_matrix(np.maximum(dist, 1e-6) * (1 - np.eye(n))))
        for i, j in zip(*mst.nonzero()):
            pairs.add((min(int(i), int(j)), max(int(i), int(j))))
    ordered = sorted(pairs)
    s = np.array([p[0] for p in ordered] + [p[1] for p in ordered], dtype=np.int64)
    d = np.array([p[1] for p in ordered] + [p[0] for p in ordered], dtype=np.int64)
    delay_s = dist[s, d] * route_factor / FIBRE_KM_PER_MS * 1e-3 if len(s) else np.zeros(0)
    return Topology(
        name=name, nodes=names, edge_src=s, edge_dst=d, edge_delay_s=np.asarray(delay_s, dtype=float),
        coordinates=np.stack([lat, lon], axis=1),
        notes=f"geographic: one-way delay = great-circle km × {route_factor:g} / {FIBRE_KM_PER_MS:g} km/ms; "
              f"{k_nearest}-nearest links + MST",
    )


__all__ = [
    "City", "FIBRE_KM_PER_MS", "known_cities", "known_regions", "unknown_city_message", "REPETITA_TOPOLOGIES", "ROUTE_FACTOR", "Topology", "cluster_node_name",
    "clustered_topology", "geo_topology", "great_circle_km", "load_repetita", "parse_repetita",
    "world_cities", "EARTH_RADIUS_KM",
]

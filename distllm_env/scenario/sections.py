"""Parsers of the scenario sections ``topology``, ``servers``, ``clients``, ``network``,
``workload``, ``simulator`` and ``policy_defaults`` (schema: docs/scenarios.md).

Each parser validates one raw YAML section into its dataclass (:mod:`.specs`), converts units
(ms → s, GB → bytes) and checks every converted value finite and every count against
:mod:`distllm_env.limits`.  Checks that need a drawn topology (node names, connectivity) happen in
:func:`distllm_env.instance.build_instance`.  Every error is a :class:`ScenarioError` naming the
field's dotted path.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Mapping

from .. import validation as v
from ..catalog import Catalog
from ..catalog_parse import memory_bytes, resolve_path
from ..errors import ScenarioError
from ..limits import MAX_CLIENTS, MAX_DURATION_S, MAX_SERVERS, MAX_TOPOLOGY_NODES
from ..topology import REPETITA_TOPOLOGIES, known_cities, known_regions, unknown_city_message
from .specs import (POLICY_FAMILIES, RESERVATION_MODES, ClientSampler, ClientSpec, ClusteredTopologySpec,
                    GeoTopologySpec, NetworkSpec, PolicyDefaults, RepetitaTopologySpec, ServerSampler, ServerSpec,
                    SimulatorSpec, TopologySpec)
from .workload_section import parse_workload  # the workload section's parser (kept importable from here)

_MAX_MS = MAX_DURATION_S * 1e3
_UNUSED_BANDWIDTH = ("not used by the simulator; bandwidth is folded into the fitted overheads, see docs/model.md "
                     "(remove this key)")


def _ms(d: Mapping, key: str, path: str, default: float | None = None) -> float:
    """``d[key]`` milliseconds as seconds, ≥ 0 and ≤ MAX_DURATION_S."""
    kw = {} if default is None else {"default": default}
    return v.number(d, key, path, minimum=0, maximum=_MAX_MS, **kw) * 1e-3


def parse_topology(value: Any, base_dir: str | None) -> TopologySpec:
    """The ``topology`` section: exactly one of ``repetita``, ``clusters`` or ``geo``."""
    d = v.mapping(value, "topology")
    kinds = [k for k in ("repetita", "clusters", "geo") if k in d]
    v.check_keys(d, "topology", ("repetita", "clusters", "geo"))
    if len(kinds) != 1:
        raise ScenarioError("topology", "expected exactly one of 'repetita', 'clusters' or 'geo'")
    kind = kinds[0]
    if kind == "repetita":
        name = d["repetita"]
        if not isinstance(name, str):
            raise ScenarioError("topology.repetita", f"expected a topology name or .graph path, got {v.short(name)}")
        if name not in REPETITA_TOPOLOGIES:
            p = resolve_path(name, base_dir)
            if not (p.suffix == ".graph" and p.is_file()):
                raise ScenarioError("topology.repetita", f"expected one of {list(REPETITA_TOPOLOGIES)} or a .graph "
                                                         f"file path, got {v.short(name)}")
            name = str(p)
        return RepetitaTopologySpec(name)
    if kind == "clusters":
        path = "topology.clusters"
        c = v.mapping(d["clusters"], path)
        for k in ("intra_bandwidth_gbps", "inter_bandwidth_gbps"):
            if k in c:
                raise ScenarioError(f"{path}.{k}", _UNUSED_BANDWIDTH)
        v.check_keys(c, path, ("sizes", "intra_rtt_ms", "inter_rtt_ms"), required=("sizes",))
        sizes = tuple(v.check_int(s, f"{path}.sizes.{i}", minimum=1, maximum=MAX_TOPOLOGY_NODES)
                      for i, s in enumerate(v.sequence(c["sizes"], f"{path}.sizes", MAX_TOPOLOGY_NODES)))
        if not sizes:
            raise ScenarioError(f"{path}.sizes", "expected at least one cluster")
        if sum(sizes) > MAX_TOPOLOGY_NODES:
            raise ScenarioError(f"{path}.sizes", f"{sum(sizes)} nodes in all; at most {MAX_TOPOLOGY_NODES} are allowed")
        return ClusteredTopologySpec(sizes=sizes, intra_rtt_s=_ms(c, "intra_rtt_ms", path, 5.0),
                                     inter_rtt_s=_ms(c, "inter_rtt_ms", path, 100.0))
    path = "topology.geo"
    g = v.mapping(d["geo"], path)
    v.check_keys(g, path, ("cities", "num_nodes", "regions", "k_nearest", "route_factor", "jitter_km"))
    if ("cities" in g) == ("num_nodes" in g):
        raise ScenarioError(path, "expected exactly one of 'cities' (explicit list) or 'num_nodes' (drawn per seed)")
    cities = None
    if "cities" in g:
        cities = tuple(v.check_string(c, f"{path}.cities.{i}")
                       for i, c in enumerate(v.sequence(g["cities"], f"{path}.cities", MAX_TOPOLOGY_NODES)))
        if not cities:
            raise ScenarioError(f"{path}.cities", "expected at least one city")
        for i, c in enumerate(cities):
            if c not in known_cities():
                raise ScenarioError(f"{path}.cities.{i}", unknown_city_message(c))
    regions = None
    if "regions" in g:
        known = known_regions()
        regions = tuple(v.check_string(r, f"{path}.regions.{i}")
                        for i, r in enumerate(v.sequence(g["regions"], f"{path}.regions", len(known) * 4)))
        for i, r in enumerate(regions):
            if r not in known:
                raise ScenarioError(f"{path}.regions.{i}", f"unknown region {v.short(r)}; known regions: {list(known)}")
        if not regions:
            raise ScenarioError(f"{path}.regions", f"expected at least one region of {list(known)}")
    return GeoTopologySpec(
        cities=cities,
        num_nodes=v.integer(g, "num_nodes", path, minimum=1, maximum=MAX_TOPOLOGY_NODES) if "num_nodes" in g else None,
        regions=regions,
        k_nearest=v.integer(g, "k_nearest", path, default=3, minimum=1, maximum=MAX_TOPOLOGY_NODES),
        route_factor=v.number(g, "route_factor", path, default=1.5, minimum=1.0, maximum=100.0),
        jitter_km=v.number(g, "jitter_km", path, default=50.0, minimum=0, maximum=20_000.0),
    )


def _node_ref(value: Any, path: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ScenarioError(path, f"expected a node name or index, got {v.short(value)}")
    if isinstance(value, int) and not 0 <= value < MAX_TOPOLOGY_NODES:
        raise ScenarioError(path, f"expected a node index in [0, {MAX_TOPOLOGY_NODES - 1}], got {v.short(value)}")
    return value


def _node_list(d: Mapping, path: str) -> tuple[str | int, ...] | None:
    if "nodes" not in d:
        return None
    items = v.sequence(d["nodes"], f"{path}.nodes", MAX_TOPOLOGY_NODES)
    return tuple(_node_ref(n, f"{path}.nodes.{i}") for i, n in enumerate(items))


def _memory(d: Mapping, path: str) -> int | None:
    return memory_bytes(d, "memory_gb", path) if "memory_gb" in d else None


def parse_servers(value: Any, catalog: Catalog):
    """The ``servers`` section: a list of servers, or a sampler (``count`` / ``fraction_of_nodes``)."""
    if isinstance(value, list):
        if not value:
            raise ScenarioError("servers", "expected at least one server")
        v.sequence(value, "servers", MAX_SERVERS)
        out = []
        for i, item in enumerate(value):
            path = f"servers.{i}"
            d = v.mapping(item, path)
            v.check_keys(d, path, ("gpu", "node", "memory_gb"), required=("gpu", "node"))
            gpu = v.string(d, "gpu", path)
            catalog.gpu(gpu, f"{path}.gpu")
            out.append(ServerSpec(gpu=gpu, node=_node_ref(d["node"], f"{path}.node"), memory_bytes=_memory(d, path)))
        return tuple(out)
    d = v.mapping(value, "servers")
    path = "servers"
    v.check_keys(d, path, ("count", "fraction_of_nodes", "gpu_mix", "nodes", "distinct_nodes", "memory_gb"),
                 required=("gpu_mix",))
    if ("count" in d) == ("fraction_of_nodes" in d):
        raise ScenarioError(path, "expected a list of servers, or a sampler with exactly one of 'count' or "
                                  "'fraction_of_nodes'")
    mix_raw = v.mapping(d["gpu_mix"], f"{path}.gpu_mix")
    if not mix_raw:
        raise ScenarioError(f"{path}.gpu_mix", "expected at least one GPU")
    mix, rest = [], 0
    for gpu, frac in mix_raw.items():
        catalog.gpu(gpu, f"{path}.gpu_mix.{gpu}")
        if frac == "rest":
            rest += 1
            mix.append((gpu, None))
        else:
            mix.append((gpu, v.check_number(frac, f"{path}.gpu_mix.{gpu}", minimum=0, maximum=1)))
    if rest > 1:
        raise ScenarioError(f"{path}.gpu_mix", "at most one GPU may take the 'rest'")
    if rest == 0 and not math.isclose(sum(f for _, f in mix), 1.0, abs_tol=1e-9):
        raise ScenarioError(f"{path}.gpu_mix", "fractions must sum to 1 (or mark one GPU as 'rest')")
    return ServerSampler(
        count=v.integer(d, "count", path, minimum=1, maximum=MAX_SERVERS) if "count" in d else None,
        fraction_of_nodes=v.number(d, "fraction_of_nodes", path, minimum=0, exclusive_minimum=True, maximum=1)
        if "fraction_of_nodes" in d else None,
        gpu_mix=tuple(mix), nodes=_node_list(d, path),
        distinct_nodes=v.boolean(d, "distinct_nodes", path, default=True), memory_bytes=_memory(d, path),
    )


def _device(d: Mapping, path: str, catalog: Catalog) -> str | None:
    if d.get("device") is None:
        return None
    device = v.string(d, "device", path)
    catalog.device(device, f"{path}.device")
    return device


def parse_clients(value: Any, catalog: Catalog):
    """The ``clients`` section: a list of clients, or a sampler (``count``)."""
    if isinstance(value, list):
        if not value:
            raise ScenarioError("clients", "expected at least one client")
        v.sequence(value, "clients", MAX_CLIENTS)
        out = []
        for i, item in enumerate(value):
            path = f"clients.{i}"
            d = v.mapping(item, path)
            v.check_keys(d, path, ("node", "device", "weight"), required=("node",))
            out.append(ClientSpec(node=_node_ref(d["node"], f"{path}.node"), device=_device(d, path, catalog),
                                  weight=v.number(d, "weight", path, default=1.0, minimum=0, exclusive_minimum=True,
                                                  maximum=1e12)))
        return tuple(out)
    d = v.mapping(value, "clients")
    path = "clients"
    v.check_keys(d, path, ("count", "nodes", "device"), required=("count",))
    return ClientSampler(count=v.integer(d, "count", path, minimum=1, maximum=MAX_CLIENTS), nodes=_node_list(d, path),
                         device=_device(d, path, catalog))


def parse_network(value: Any) -> NetworkSpec:
    """The ``network`` section (overheads in ms, stored in s)."""
    path = "network"
    d = v.mapping(value, path)
    v.check_keys(d, path, ("token_overhead_ms", "prefill_overhead_ms", "initial_delay_ms"))
    defaults = NetworkSpec()
    slope, intercept = defaults.prefill_overhead_slope_s, defaults.prefill_overhead_intercept_s
    if "prefill_overhead_ms" in d:
        p = d["prefill_overhead_ms"]
        ppath = f"{path}.prefill_overhead_ms"
        if not isinstance(p, Mapping):
            slope, intercept = 0.0, v.check_number(p, ppath, minimum=0, maximum=_MAX_MS) * 1e-3
        else:
            pm = v.mapping(p, ppath)
            v.check_keys(pm, ppath, ("slope", "intercept"), required=("slope", "intercept"))
            slope, intercept = _ms(pm, "slope", ppath), _ms(pm, "intercept", ppath)
    return NetworkSpec(
        token_overhead_s=_ms(d, "token_overhead_ms", path, defaults.token_overhead_s * 1e3),
        prefill_overhead_slope_s=slope, prefill_overhead_intercept_s=intercept,
        initial_delay_s=_ms(d, "initial_delay_ms", path, defaults.initial_delay_s * 1e3),
    )


#: ``simulator.server_model`` values (docs/contracts.md §3).
SERVER_MODELS = ("independent", "serial", "batched")


def parse_simulator(value: Any) -> SimulatorSpec:
    """The ``simulator`` section (back-off, reservation mode, allocation delays in s)."""
    path = "simulator"
    d = v.mapping(value, path)
    v.check_keys(d, path, ("backoff", "reservation", "allocation_delay_s", "server_model", "batched_step_overhead_ms"))
    delays = {}
    for fam, sec in v.mapping(d.get("allocation_delay_s"), f"{path}.allocation_delay_s").items():
        if fam not in POLICY_FAMILIES:
            raise ScenarioError(f"{path}.allocation_delay_s.{fam}", f"unknown policy family; expected one of {list(POLICY_FAMILIES)}")
        delays[fam] = v.check_number(sec, f"{path}.allocation_delay_s.{fam}", minimum=0, maximum=MAX_DURATION_S)
    return SimulatorSpec(
        backoff=v.boolean(d, "backoff", path, default=True),
        reservation=v.string(d, "reservation", path, default="calendar", choices=RESERVATION_MODES),
        allocation_delay_s=MappingProxyType(delays),
        server_model=v.string(d, "server_model", path, default="independent", choices=SERVER_MODELS),
        batched_step_overhead_ms=v.check_number(d.get("batched_step_overhead_ms", 0.0),
                                                f"{path}.batched_step_overhead_ms", minimum=0, maximum=60_000),
    )


def parse_policy_defaults(value: Any) -> PolicyDefaults:
    """The ``policy_defaults`` section: default policy names and per-policy options (data only)."""
    path = "policy_defaults"
    d = v.mapping(value, path)
    v.check_keys(d, path, ("placement", "routing", "split", "options"))
    options = {}
    for name, opts in v.mapping(d.get("options"), f"{path}.options").items():
        options[name] = MappingProxyType(v.mapping(opts, f"{path}.options.{name}"))

    def name_of(key: str) -> str | None:
        return v.string(d, key, path) if d.get(key) is not None else None

    return PolicyDefaults(placement=name_of("placement"), routing=name_of("routing"), split=name_of("split"),
                          options=MappingProxyType(options))


__all__ = ["parse_clients", "parse_network", "parse_policy_defaults", "parse_servers", "parse_simulator",
           "parse_topology", "parse_workload"]

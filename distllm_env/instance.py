"""Concrete instances: a scenario with its samplers drawn for one seed.

:func:`build_instance` draws the topology (geo), the servers and the clients from the ``instance``
stream (docs/contracts.md §1) and precomputes the arrays every policy and the simulator use: server
memory and timing, client→server RTTs and per-token costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .catalog import Calibration, DeviceSpec, GpuSpec, ModelSpec
from .errors import ScenarioError
from .perf import decode_hop_cost_s, prefill_comm_s, prefill_hop_cost_s, service_time_s, token_cost_s
from .rng import generators, seed_streams
from .scenario import (ClientSampler, ClusteredTopologySpec, GeoTopologySpec, RepetitaTopologySpec, Scenario,
                       ServerSampler, load_scenario)
from .scenario.fidelity import scenario_fidelity
from .topology import Topology, clustered_topology, geo_topology, load_repetita


@dataclass(frozen=True)
class Server:
    index: int
    gpu: GpuSpec
    node: str
    node_index: int
    memory_bytes: int
    calibration: Calibration

    @property
    def name(self) -> str:
        return f"s{self.index}"


@dataclass(frozen=True)
class Client:
    index: int
    node: str
    node_index: int
    device: DeviceSpec | None
    weight: float


def round_half_up(x: float) -> int:
    """Round half up (0.5 → 1), as docs/contracts.md §4 specifies for server counts."""
    return int(np.floor(x + 0.5 + 1e-9))


class Instance:
    """A scenario realised for one seed.  Arrays are indexed by server j and client c."""

    def __init__(self, scenario: Scenario, seed: int, topology: Topology, servers: tuple[Server, ...],
                 clients: tuple[Client, ...]):
        """Arrays from the drawn ``servers`` and ``clients`` on ``topology`` (use :func:`build_instance`).

        Raises:
            ScenarioError: a client's node reaches no server at all (path ``clients.<c>.node``)."""
        self.scenario = scenario
        self.seed = seed
        self.topology = topology
        self.servers = servers
        self.clients = clients
        self.model: ModelSpec = scenario.model
        net = scenario.network
        self.token_overhead_s = net.token_overhead_s
        self.prefill_overhead_slope_s = net.prefill_overhead_slope_s
        self.prefill_overhead_intercept_s = net.prefill_overhead_intercept_s
        self.initial_delay_s = net.initial_delay_s
        self.memory_bytes = np.array([s.memory_bytes for s in servers], dtype=np.int64)
        self.max_blocks = tuple(s.gpu.max_blocks for s in servers)
        self.tau_decode_s = np.array([s.calibration.tau_decode_s for s in servers], dtype=float)
        self.prefill_slope_s = np.array([s.calibration.prefill_slope_s_per_token for s in servers], dtype=float)
        self.prefill_intercept_s = np.array([s.calibration.prefill_intercept_s for s in servers], dtype=float)
        self.rtt_s = topology.rtt_s([c.node_index for c in clients], [s.node_index for s in servers])
        self.token_cost_s = token_cost_s(self.rtt_s, self.token_overhead_s)
        for c in clients:
            if not np.any(np.isfinite(self.rtt_s[c.index])):
                raise ScenarioError(f"clients.{c.index}.node", f"node {c.node!r} is disconnected from every server")

    @property
    def num_servers(self) -> int:
        return len(self.servers)

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    @property
    def num_blocks(self) -> int:
        return self.model.num_blocks

    @property
    def block_bytes(self) -> int:
        """s_m."""
        return self.model.block_bytes

    @property
    def kv_bytes_per_token_per_block(self) -> int:
        return self.model.kv_bytes_per_block(1, 0)

    @cached_property
    def kv_block_bytes(self) -> int:
        """s_c: one session's KV bytes per block at the scenario's longest session (prompt + output,
        ``max_length`` with unknown lengths), the scalar that CG-BP, |R| and PETALS' pool use
        (docs/contracts.md §1, §3 "Planning lengths")."""
        return self.model.kv_bytes_per_block(self.scenario.max_session_tokens, 0)

    @cached_property
    def server_rtt_s(self) -> np.ndarray:
        """Server-to-server RTT (PETALS' routing uses server pings), shape (N, N)."""
        idx = [s.node_index for s in self.servers]
        return self.topology.rtt_s(idx, idx)

    def prefill_comm_s(self, prompt_tokens: int) -> np.ndarray:
        """t^I_cj(l_in) for every client and server, shape (C, N)."""
        return prefill_comm_s(self.rtt_s, self.prefill_overhead_slope_s, self.prefill_overhead_intercept_s,
                              prompt_tokens)

    def tau_prefill_s(self, prompt_tokens: int, servers=None) -> np.ndarray:
        """τ^I_j(l_in) = slope_j · l_in + intercept_j for every server (shape (N,)), or for ``servers``."""
        if servers is None:
            return self.prefill_slope_s * prompt_tokens + self.prefill_intercept_s
        return self.prefill_slope_s[servers] * prompt_tokens + self.prefill_intercept_s[servers]

    def chain_times_s(self, client: int, servers: np.ndarray, blocks: np.ndarray, prompt_tokens: int,
                      output_tokens: int) -> tuple[float, float]:
        """(first-token offset, service time) in seconds of a request of ``client`` served alone on the
        chain ``servers`` (int array, shape (H,)) hosting ``blocks`` (m per hop, shape (H,)), client-side
        blocks excluded: Σ_hops prefill hop cost, and that plus (l_out − 1) decode steps (docs/model.md
        §4.3, arXiv 2512.21884 eq. (3)).  The one place both engines evaluate a chain (bit-identical)."""
        prefill_comm = prefill_comm_s(self.rtt_s[client, servers], self.prefill_overhead_slope_s,
                                      self.prefill_overhead_intercept_s, prompt_tokens)
        prefill_hops = prefill_hop_cost_s(prefill_comm, self.tau_prefill_s(prompt_tokens, servers), blocks)
        decode_hops = decode_hop_cost_s(self.token_cost_s[client, servers], self.tau_decode_s[servers], blocks)
        return float(np.sum(prefill_hops)), service_time_s(prefill_hops, decode_hops, output_tokens)

    def derived_calibrations(self) -> list[str]:
        """Names of the derived (model, GPU) pairs this instance uses."""
        return sorted({f"{s.calibration.model}×{s.calibration.gpu}" for s in self.servers if s.calibration.derived})

    def describe_servers(self) -> list[dict]:
        return [{"server": s.index, "gpu": s.gpu.name, "node": s.node, "memory_gb": s.memory_bytes / 1e9}
                for s in self.servers]


def _build_topology(scenario: Scenario, rng: np.random.Generator) -> Topology:
    spec = scenario.topology
    if isinstance(spec, RepetitaTopologySpec):
        return load_repetita(spec.name)
    if isinstance(spec, ClusteredTopologySpec):
        return clustered_topology(spec.sizes, spec.intra_rtt_s, spec.inter_rtt_s)
    assert isinstance(spec, GeoTopologySpec)
    return geo_topology(rng, cities=spec.cities, num_nodes=spec.num_nodes, regions=spec.regions,
                        k_nearest=spec.k_nearest, route_factor=spec.route_factor, jitter_km=spec.jitter_km,
                        name=f"geo-{scenario.name}")


def _sample_servers(scenario: Scenario, sampler: ServerSampler, topo: Topology, rng) -> list[tuple[str, int, int | None]]:
    if sampler.nodes is not None:
        candidates = [topo.index(n, f"servers.nodes.{i}") for i, n in enumerate(sampler.nodes)]
    else:
        candidates = list(range(topo.num_nodes))
    n = sampler.count if sampler.count is not None else round_half_up(sampler.fraction_of_nodes * topo.num_nodes)
    n = max(n, 1)
    if sampler.distinct_nodes:
        if n > len(candidates):
            raise ScenarioError("servers.count", f"{n} servers on distinct nodes but only {len(candidates)} candidate nodes")
        nodes = [candidates[i] for i in rng.permutation(len(candidates))[:n]]
    else:
        nodes = [candidates[i] for i in rng.integers(0, len(candidates), size=n)]
    gpus: list[str] = []
    rest_gpu = None
    for gpu, frac in sampler.gpu_mix:
        if frac is None:
            rest_gpu = gpu
            continue
        gpus += [gpu] * round_half_up(frac * n)
    if rest_gpu is None:
        # fractions sum to 1: the last listed GPU absorbs rounding
        last = sampler.gpu_mix[-1][0]
        gpus = [g for g in gpus if g != last][:n]
        gpus += [last] * (n - len(gpus))
    else:
        if len(gpus) > n:
            raise ScenarioError("servers.gpu_mix", f"fractions give {len(gpus)} servers, more than the {n} drawn")
        gpus += [rest_gpu] * (n - len(gpus))
    return [(g, node, sampler.memory_bytes) for g, node in zip(gpus, nodes)]


def build_instance(scenario: Scenario, seed: int = 0) -> Instance:
    """Realise ``scenario`` for ``seed`` (draws only from the ``instance`` stream).

    Runs the checks that need the drawn topology, which parsing leaves here: node names and
    indices, distinct-node counts, GPU mixes against the drawn count, clients cut off from every
    server.

    Raises:
        ScenarioError: naming the field's dotted path (``servers.0.node``, ``clients.count``)."""
    topo_rng, server_rng, client_rng = generators(seed_streams(seed)["instance"], 3)
    topo = _build_topology(scenario, topo_rng)
    catalog = scenario.catalog
    model = scenario.model
    if isinstance(scenario.servers, ServerSampler):
        raw_servers = _sample_servers(scenario, scenario.servers, topo, server_rng)
        paths = [f"servers (drawn server {i})" for i in range(len(raw_servers))]
    else:
        raw_servers = [(s.gpu, topo.index(s.node, f"servers.{i}.node"), s.memory_bytes)
                       for i, s in enumerate(scenario.servers)]
        paths = [f"servers.{i}" for i in range(len(raw_servers))]
    servers = []
    for j, ((gpu_name, node_idx, mem), path) in enumerate(zip(raw_servers, paths)):
        gpu = catalog.gpu(gpu_name, f"{path}.gpu")
        cal = catalog.calibration(model.name, gpu.name)
        servers.append(Server(index=j, gpu=gpu, node=topo.nodes[node_idx], node_index=node_idx,
                              memory_bytes=int(mem if mem is not None else gpu.memory_bytes), calibration=cal))
    if isinstance(scenario.clients, ClientSampler):
        cs = scenario.clients
        if cs.nodes is not None:
            candidates = [topo.index(n, f"clients.nodes.{i}") for i, n in enumerate(cs.nodes)]
        else:
            candidates = list(range(topo.num_nodes))
        if scenario_fidelity(scenario).client_node == "off-servers":
            # the published code draws the client after the servers, from the nodes left
            # (docs/fidelity.md "Fidelity modes", reading 3)
            taken = {s.node_index for s in servers}
            candidates = [n for n in candidates if n not in taken]
            if cs.count > len(candidates):
                raise ScenarioError("clients.count", f"{cs.count} clients on nodes without a server "
                                    f"(fidelity.client_node: off-servers) but only {len(candidates)} such nodes")
        if cs.count > len(candidates):
            raise ScenarioError("clients.count", f"{cs.count} clients on distinct nodes but only {len(candidates)} nodes")
        picks = [candidates[i] for i in client_rng.permutation(len(candidates))[: cs.count]]
        device = catalog.device(cs.device, "clients.device") if cs.device else None
        clients = [Client(index=i, node=topo.nodes[n], node_index=n, device=device, weight=1.0)
                   for i, n in enumerate(picks)]
    else:
        clients = []
        for i, c in enumerate(scenario.clients):
            n = topo.index(c.node, f"clients.{i}.node")
            device = catalog.device(c.device, f"clients.{i}.device") if c.device else None
            clients.append(Client(index=i, node=topo.nodes[n], node_index=n, device=device, weight=c.weight))
    return Instance(scenario, seed, topo, tuple(servers), tuple(clients))


def validate_scenario(spec, overrides=(), seed: int = 0) -> Scenario:
    """Load ``spec`` (as :func:`~distllm_env.scenario.load_scenario`) and build its ``seed`` instance,
    so that every check runs, including those that need the drawn topology (node names,
    connectivity, distinct-node counts).  Returns the scenario.

    Raises:
        ScenarioError: naming the field's dotted path."""
    scenario = load_scenario(spec, overrides)
    build_instance(scenario, seed)
    return scenario


__all__ = ["Client", "Instance", "Server", "build_instance", "round_half_up", "validate_scenario"]

"""The frozen section dataclasses of a scenario (docs/contracts.md §3).

A scenario is a *specification*: samplers (``servers: {fraction_of_nodes: …}``, ``clients:
{count: …}``, ``topology: {geo: {num_nodes: …}}``) are drawn per seed by
:func:`distllm_env.instance.build_instance`.  Times are seconds, memories bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..lengths import LengthDist
from ..split.section import SplitRequestSpec, SplitSpec

TOP_LEVEL_KEYS = ("name", "description", "model", "gpus", "models", "devices", "topology", "servers",
                  "clients", "network", "workload", "simulator", "policy_defaults", "split", "fidelity", "churn")
RESERVATION_MODES = ("calendar", "published")
POLICY_FAMILIES = ("petals", "proposed", "default")


@dataclass(frozen=True)
class RepetitaTopologySpec:
    name: str


@dataclass(frozen=True)
class ClusteredTopologySpec:
    """Fully meshed clusters of ``sizes`` nodes; RTTs in seconds.  Bandwidth is not a field: it is
    folded into the fitted overheads (docs/model.md)."""

    sizes: tuple[int, ...]
    intra_rtt_s: float = 0.005
    inter_rtt_s: float = 0.100


@dataclass(frozen=True)
class GeoTopologySpec:
    cities: tuple[str, ...] | None = None
    num_nodes: int | None = None
    regions: tuple[str, ...] | None = None
    k_nearest: int = 3
    route_factor: float = 1.5
    jitter_km: float = 50.0


TopologySpec = RepetitaTopologySpec | ClusteredTopologySpec | GeoTopologySpec


@dataclass(frozen=True)
class ServerSpec:
    gpu: str
    node: str | int
    memory_bytes: int | None = None


@dataclass(frozen=True)
class ServerSampler:
    """Draws servers per seed: ``count`` (or round-half-up(fraction_of_nodes · nodes)) distinct nodes;
    GPU counts from ``gpu_mix`` (round-half-up(fraction · count) each, the ``rest`` entry takes the
    remainder)."""

    count: int | None
    fraction_of_nodes: float | None
    gpu_mix: tuple[tuple[str, float | None], ...]   # None = "rest"
    nodes: tuple[str | int, ...] | None = None
    distinct_nodes: bool = True
    memory_bytes: int | None = None


@dataclass(frozen=True)
class ClientSpec:
    node: str | int
    device: str | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class ClientSampler:
    count: int
    nodes: tuple[str | int, ...] | None = None
    device: str | None = None


@dataclass(frozen=True)
class NetworkSpec:
    token_overhead_s: float = 0.100
    prefill_overhead_slope_s: float = 0.7049e-3
    prefill_overhead_intercept_s: float = 0.067
    initial_delay_s: float = 0.070


@dataclass(frozen=True)
class WorkloadSpec:
    arrival: str = "poisson"
    arrival_rate_per_s: float = 0.5
    trace: str | None = None
    num_requests: int | None = 100
    prompt_tokens: LengthDist = LengthDist("fixed", value=20)
    output_tokens: LengthDist = LengthDist("fixed", value=128)
    #: False: the client declares ``max_length`` at session open, not its true output length.
    output_tokens_known: bool = True
    #: total sequence length declared at session open (tokens); None = the model's maximum sequence.
    max_length: int | None = None
    #: ``reject`` | ``truncate`` requests longer than the model's maximum sequence.
    over_length: str = "reject"
    #: trace window: skip the first ``trace_offset_requests`` requests, or those before ``trace_offset_s``.
    trace_offset_requests: int = 0
    trace_offset_s: float = 0.0
    #: arrival-rate multiplier: arrival times are divided by it.
    time_scale: float = 1.0
    #: ``arrival: gamma``: coefficient of variation of the inter-arrival gaps.
    cv: float | None = None
    #: ``arrival: mmpp``: Poisson rate (req/s) and mean sojourn (s) of each of the two states.
    rates_per_s: tuple[float, ...] = ()
    mean_sojourn_s: tuple[float, ...] = ()


@dataclass(frozen=True)
class SimulatorSpec:
    backoff: bool = True
    reservation: str = "calendar"
    allocation_delay_s: Mapping[str, float] = field(default_factory=dict)
    #: server contention model (docs/contracts.md §3, docs/model.md "Server models"):
    #: ``independent`` (published), ``serial`` (PETALS task pool) or ``batched`` (continuous batching)
    server_model: str = "independent"
    #: fixed per-iteration overhead of a ``batched`` server, milliseconds (an assumption, docs/model.md)
    batched_step_overhead_ms: float = 0.0


@dataclass(frozen=True)
class PolicyDefaults:
    placement: str | None = None
    routing: str | None = None
    split: str | None = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


__all__ = [
    "ClientSampler", "ClientSpec", "ClusteredTopologySpec", "GeoTopologySpec", "LengthDist", "NetworkSpec",
    "POLICY_FAMILIES", "PolicyDefaults", "RESERVATION_MODES", "RepetitaTopologySpec", "ServerSampler", "ServerSpec",
    "SimulatorSpec", "SplitRequestSpec", "SplitSpec", "TOP_LEVEL_KEYS", "TopologySpec", "WorkloadSpec",
]

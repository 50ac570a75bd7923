"""Scenarios: YAML presets and files validated into frozen dataclasses (CONTRACTS.md §3).

``load_scenario("paper-clustered")`` loads a shipped preset, ``load_scenario("my.yaml")`` a file,
and ``overrides=["workload.arrival_rate_per_s=0.5"]`` applies ``--set`` style overrides to the raw
YAML before validation.  Every malformed field raises :class:`ScenarioError` naming its dotted path
and what was expected.  YAML is read with ``yaml.safe_load`` only.

A scenario is a *specification*: samplers (``servers: {fraction_of_nodes: …}``, ``clients:
{count: …}``, ``topology: {geo: {num_nodes: …}}``) are drawn per seed from the ``instance`` random
stream by :func:`distllm_env.instance.build_instance`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from . import validation as v
from .catalog import (GB, Calibration, Catalog, DeviceSpec, GpuSpec, ModelSpec, NF4_BYTES_PER_PARAM,
                      calibration_from_petals_json, default_catalog)
from .errors import ScenarioError
from .topology import REPETITA_TOPOLOGIES

TOP_LEVEL_KEYS = ("name", "description", "model", "gpus", "models", "devices", "topology", "servers",
                  "clients", "network", "workload", "simulator", "policy_defaults", "split")
RESERVATION_MODES = ("calendar", "published")
POLICY_FAMILIES = ("petals", "proposed", "default")
SHIPPED_PETALS_JSON = {
    "published": "petals_throughput_v5.json",
    "published-large": "petals_throughput_v5_large.json",
}
QUANTIZATION_BYTES = {"nf4": NF4_BYTES_PER_PARAM, "int8": 1.0, "bf16": 2.0, "fp16": 2.0}


# --------------------------------------------------------------------------------------------------
# Section dataclasses
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RepetitaTopologySpec:
    name: str


@dataclass(frozen=True)
class ClusteredTopologySpec:
    sizes: tuple[int, ...]
    intra_rtt_s: float = 0.005
    inter_rtt_s: float = 0.100
    intra_bandwidth_gbps: float = 1.0
    inter_bandwidth_gbps: float = 0.1


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
class LengthDist:
    """A token-length distribution: ``fixed`` (value), ``uniform`` (low..high inclusive), ``choice``
    (values with optional weights) or ``lognormal`` (median, sigma, clipped to low..high)."""

    dist: str
    value: int | None = None
    low: int | None = None
    high: int | None = None
    values: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    median: float | None = None
    sigma: float | None = None

    @property
    def max(self) -> int:
        if self.dist == "fixed":
            return int(self.value)
        if self.dist == "choice":
            return int(max(self.values))
        return int(self.high)

    @property
    def min(self) -> int:
        if self.dist == "fixed":
            return int(self.value)
        if self.dist == "choice":
            return int(min(self.values))
        return int(self.low)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.dist == "fixed":
            return np.full(n, int(self.value), dtype=np.int64)
        if self.dist == "uniform":
            return rng.integers(self.low, self.high + 1, size=n).astype(np.int64)
        if self.dist == "choice":
            p = None
            if self.weights:
                w = np.asarray(self.weights, dtype=float)
                p = w / w.sum()
            return rng.choice(np.asarray(self.values, dtype=np.int64), size=n, p=p)
        x = np.rint(self.median * np.exp(self.sigma * rng.standard_normal(n)))
        return np.clip(x, self.low, self.high).astype(np.int64)


@dataclass(frozen=True)
class WorkloadSpec:
    arrival: str = "poisson"
    arrival_rate_per_s: float = 0.5
    trace: str | None = None
    num_requests: int | None = 100
    prompt_tokens: LengthDist = LengthDist("fixed", value=20)
    output_tokens: LengthDist = LengthDist("fixed", value=128)


@dataclass(frozen=True)
class SimulatorSpec:
    backoff: bool = True
    reservation: str = "calendar"
    allocation_delay_s: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyDefaults:
    placement: str | None = None
    routing: str | None = None
    split: str | None = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitRequestSpec:
    """One request type of the split-inference mix: a layer model (``distllm_env.split`` catalog or a
    catalog block model), its prompt / output length distributions and its weight in the mix."""

    model: str
    prompt_tokens: LengthDist
    output_tokens: LengthDist
    weight: float = 1.0


@dataclass(frozen=True)
class SplitSpec:
    """The optional ``split:`` section: the SplitLLM single-server setting (docs/split.md).

    The server is geo server ``server_index`` (its GPU's dense bf16 FLOP/s × ``server_efficiency``, or
    ``server_effective_flops``; its node gives the RTT to each client unless ``rtt_s`` is set).  The
    clients are the scenario's clients that have a ``device``; their links come from the device unless
    ``uplink_bits_per_s`` / ``downlink_bits_per_s`` are set.  SLA per request: ``sla_factor`` × the
    request's server-only latency (rule ``server_only_factor``) or ``sla_fixed_s`` (rule ``fixed``).
    Time step δ = SLA / ``budget_steps`` unless ``delta_s`` is set."""

    requests: tuple[SplitRequestSpec, ...]
    sla_rule: str = "server_only_factor"
    sla_factor: float = 1.5
    sla_fixed_s: float | None = None
    budget_steps: int = 1000
    delta_s: float | None = None
    server_index: int = 0
    server_efficiency: float = 0.3
    server_effective_flops: float | None = None
    rtt_s: float | None = None
    uplink_bits_per_s: float | None = None
    downlink_bits_per_s: float | None = None
    num_requests: int = 2000
    arrival_base_per_s: float = 1.0
    arrival_factor: float = 1.1


@dataclass(frozen=True, eq=False)
class Scenario:
    """A validated scenario.  ``raw`` is the mapping it was parsed from (after overrides)."""

    name: str
    description: str
    model_name: str
    catalog: Catalog
    topology: TopologySpec
    servers: tuple[ServerSpec, ...] | ServerSampler
    clients: tuple[ClientSpec, ...] | ClientSampler
    network: NetworkSpec
    workload: WorkloadSpec
    simulator: SimulatorSpec
    policy_defaults: PolicyDefaults
    raw: Mapping[str, Any]
    source: str = "<dict>"
    base_dir: str | None = None
    overrides: tuple[str, ...] = ()
    split: SplitSpec | None = None

    @property
    def model(self) -> ModelSpec:
        return self.catalog.model(self.model_name)

    @property
    def hash(self) -> str:
        """Content hash: sha256 of the canonical JSON of the raw scenario after overrides (12 hex)."""
        text = json.dumps(_jsonable(self.raw), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def max_prompt_tokens(self) -> int:
        if self.workload.arrival == "trace" and self._trace_lengths() is not None:
            return int(self._trace_lengths()[0].max())
        return self.workload.prompt_tokens.max

    @property
    def max_output_tokens(self) -> int:
        if self.workload.arrival == "trace" and self._trace_lengths() is not None:
            return int(self._trace_lengths()[1].max())
        return self.workload.output_tokens.max

    def _trace_lengths(self):
        from .traces import load_trace

        tr = load_trace(self.workload.trace, self.base_dir)
        if tr.prompt_tokens is None:
            return None
        n = self.workload.num_requests or len(tr.arrival_s)
        return tr.prompt_tokens[:n], tr.output_tokens[:n]

    def with_overrides(self, overrides: Sequence[str]) -> "Scenario":
        """A new scenario with ``--set PATH=VALUE`` overrides applied on top of this one's."""
        if not overrides:
            return self
        raw = apply_overrides(self.raw, overrides)
        return parse_scenario(raw, source=self.source, base_dir=self.base_dir,
                              overrides=self.overrides + tuple(overrides))

    def to_yaml(self) -> str:
        return yaml.safe_dump(_jsonable(self.raw), sort_keys=False)

    def __repr__(self) -> str:
        return f"Scenario({self.name!r}, model={self.model_name!r}, hash={self.hash})"

    def __reduce__(self):
        return (_rebuild_scenario, (_jsonable(self.raw), self.source, self.base_dir, self.overrides))


def _rebuild_scenario(raw, source, base_dir, overrides):
    return parse_scenario(raw, source=source, base_dir=base_dir, overrides=tuple(overrides))


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

def list_presets() -> list[str]:
    """Names of the shipped scenario presets."""
    root = resources.files("distllm_env.scenarios")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def preset_path(name: str):
    return resources.files("distllm_env.scenarios").joinpath(f"{name}.yaml")


def load_scenario(spec: "str | os.PathLike | Scenario | Mapping", overrides: Sequence[str] = ()) -> Scenario:
    """Load a scenario from a preset name, a YAML path, a mapping or a :class:`Scenario`."""
    overrides = tuple(overrides or ())
    if isinstance(spec, Scenario):
        return spec.with_overrides(overrides)
    if isinstance(spec, Mapping):
        raw = apply_overrides(dict(spec), overrides)
        return parse_scenario(raw, source="<dict>", overrides=overrides)
    text_spec = os.fspath(spec)
    path = Path(text_spec)
    if path.suffix in (".yaml", ".yml") or os.sep in text_spec or path.is_file():
        if not path.is_file():
            raise ScenarioError("scenario", f"no scenario file {text_spec!r}")
        raw = _read_yaml(path.read_text(), text_spec)
        base_dir = str(path.resolve().parent)
        source = str(path)
    else:
        if text_spec not in list_presets():
            raise ScenarioError("scenario", f"unknown scenario preset {text_spec!r}; presets: {list_presets()} "
                                            "(or give a path to a .yaml file)")
        raw = _read_yaml(preset_path(text_spec).read_text(), text_spec)
        base_dir = None
        source = text_spec
    raw = apply_overrides(raw, overrides)
    return parse_scenario(raw, source=source, base_dir=base_dir, overrides=overrides)


def _read_yaml(text: str, source: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError("scenario", f"{source}: invalid YAML: {exc}") from None
    return v.mapping(data, "")


# --------------------------------------------------------------------------------------------------
# Overrides (--set PATH=VALUE)
# --------------------------------------------------------------------------------------------------

def _match_key(node: dict, parts: list[str], i: int) -> tuple[str, int]:
    """The longest ``parts[i..j]`` joined with dots that is an existing key (``MIG-1g.10gb``),
    else ``parts[i]``."""
    for j in range(len(parts) - 1, i, -1):
        candidate = ".".join(parts[i: j + 1])
        if candidate in node:
            return candidate, j
    return parts[i], i


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ScenarioError("--set", f"expected PATH=VALUE, got {text!r}")
    path, value = text.split("=", 1)
    path = path.strip()
    if not path:
        raise ScenarioError("--set", f"empty PATH in {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ScenarioError(path, f"--set value {value!r} is not valid YAML: {exc}") from None
    return path.split("."), parsed


def apply_overrides(raw: Mapping, overrides: Sequence[str]) -> dict:
    """Apply ``PATH=VALUE`` overrides to a deep copy of ``raw``.  List items are addressed by index
    (``servers.3.gpu``); keys containing dots (``MIG-1g.10gb``) are matched against existing keys.
    Unknown keys are caught by validation like unknown YAML keys; a path through a scalar or past
    the end of a list is an error here."""
    out = copy.deepcopy(dict(raw))
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = out
        i, walked = 0, []
        while i < len(parts):
            key = parts[i]
            if isinstance(node, list):
                try:
                    idx = int(key)
                except ValueError:
                    raise ScenarioError(".".join(walked + [key]), f"--set: expected a list index, got {key!r}") from None
                if not -len(node) <= idx < len(node):
                    raise ScenarioError(".".join(walked + [key]),
                                        f"--set: index {idx} out of range (the list has {len(node)} items)")
                walked.append(key)
                if i == len(parts) - 1:
                    node[idx] = value
                else:
                    node = node[idx]
                i += 1
                continue
            if not isinstance(node, dict):
                raise ScenarioError(".".join(walked), f"--set: cannot set {'.'.join(parts[i:])!r} inside a "
                                                      f"{type(node).__name__} value")
            key, j = _match_key(node, parts, i)
            walked.append(key)
            if j == len(parts) - 1:
                node[key] = value
                break
            if key not in node or node[key] is None:
                node[key] = {}
            node = node[key]
            i = j + 1
    return out


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

def parse_scenario(raw: Mapping, source: str = "<dict>", base_dir: str | None = None,
                   overrides: Sequence[str] = ()) -> Scenario:
    """Validate a raw mapping into a :class:`Scenario` (raises :class:`ScenarioError`)."""
    raw = v.mapping(raw, "")
    v.check_keys(raw, "", TOP_LEVEL_KEYS, required=("model", "topology", "servers", "clients"))
    name = v.string(raw, "name", "", default=Path(source).stem if source != "<dict>" else "unnamed")
    description = v.string(raw, "description", "", default="")
    catalog = _parse_catalog(raw, base_dir)
    model_name = v.string(raw, "model", "")
    model = catalog.model(model_name, "model")
    topology = _parse_topology(raw.get("topology"), base_dir)
    servers = _parse_servers(raw.get("servers"), catalog)
    clients = _parse_clients(raw.get("clients"), catalog)
    network = _parse_network(raw.get("network"))
    workload = _parse_workload(raw.get("workload"), model, base_dir)
    simulator = _parse_simulator(raw.get("simulator"))
    policy_defaults = _parse_policy_defaults(raw.get("policy_defaults"))
    split = _parse_split(raw["split"], catalog, servers) if raw.get("split") is not None else None
    scenario = Scenario(
        name=name, description=description, model_name=model_name, catalog=catalog, topology=topology,
        servers=servers, clients=clients, network=network, workload=workload, simulator=simulator,
        policy_defaults=policy_defaults, raw=MappingProxyType(copy.deepcopy(dict(raw))), source=source,
        base_dir=base_dir, overrides=tuple(overrides), split=split,
    )
    # Cross-field checks that need the concrete topology and nodes: build the seed-0 instance.
    from .instance import build_instance

    build_instance(scenario, seed=0)
    return scenario


def _parse_catalog(raw: Mapping, base_dir: str | None) -> Catalog:
    base = default_catalog()
    models, gpus, devices, cals = {}, {}, {}, {}
    for name, spec in v.mapping(raw.get("models"), "models").items():
        path = v.join("models", name)
        d = v.mapping(spec, path)
        v.check_keys(d, path, ("num_blocks", "d_model", "num_heads", "num_kv_heads", "params_per_block",
                               "quantization", "max_sequence_tokens", "source"))
        heads = v.integer(d, "num_heads", path, minimum=1)
        kv = v.integer(d, "num_kv_heads", path, default=heads, minimum=1)
        if heads % kv:
            raise ScenarioError(v.join(path, "num_kv_heads"), f"must divide num_heads ({heads}), got {kv}")
        d_model = v.integer(d, "d_model", path, minimum=1)
        if d_model % (heads // kv):
            raise ScenarioError(v.join(path, "d_model"), f"must be divisible by the KV group size {heads // kv}")
        quant = v.string(d, "quantization", path, default="nf4", choices=QUANTIZATION_BYTES)
        models[name] = ModelSpec(
            name=name, num_blocks=v.integer(d, "num_blocks", path, minimum=1), d_model=d_model,
            num_heads=heads, num_kv_heads=kv, params_per_block=v.integer(d, "params_per_block", path, minimum=1),
            bytes_per_param=QUANTIZATION_BYTES[quant],
            max_sequence_tokens=v.integer(d, "max_sequence_tokens", path, default=2048, minimum=2),
            source=v.string(d, "source", path, default="scenario-defined"),
        )
    for name, spec in v.mapping(raw.get("devices"), "devices").items():
        path = v.join("devices", name)
        d = v.mapping(spec, path)
        v.check_keys(d, path, ("peak_tflops", "efficiency", "memory_gb", "uplink_mbps", "downlink_mbps",
                               "memory_bandwidth_gbps", "source"))
        devices[name] = DeviceSpec(
            name=name, peak_flops=v.number(d, "peak_tflops", path, minimum=0, exclusive_minimum=True) * 1e12,
            efficiency=v.number(d, "efficiency", path, default=0.3, minimum=0, exclusive_minimum=True, maximum=1),
            memory_bytes=int(v.number(d, "memory_gb", path, minimum=0) * GB),
            uplink_bits_per_s=v.number(d, "uplink_mbps", path, minimum=0, exclusive_minimum=True) * 1e6,
            downlink_bits_per_s=v.number(d, "downlink_mbps", path, minimum=0, exclusive_minimum=True) * 1e6,
            memory_bandwidth_bytes_per_s=v.number(d, "memory_bandwidth_gbps", path, minimum=0, exclusive_minimum=True) * 1e9
            if d.get("memory_bandwidth_gbps") is not None else None,
            source=v.string(d, "source", path, default="scenario-defined"),
        )
    all_models = {**base.models, **models}
    for name, spec in v.mapping(raw.get("gpus"), "gpus").items():
        path = v.join("gpus", name)
        d = v.mapping(spec, path)
        v.check_keys(d, path, ("memory_gb", "memory_bandwidth_gbps", "bf16_tflops", "max_blocks", "source",
                               "calibration"))
        inherited = base.gpus.get(name)
        if inherited is None:
            for k in ("memory_gb", "memory_bandwidth_gbps", "bf16_tflops"):
                if k not in d:
                    raise ScenarioError(v.join(path, k), "required for a GPU that is not in the built-in catalog")
        gpus[name] = GpuSpec(
            name=name,
            memory_bytes=int(v.number(d, "memory_gb", path, minimum=0, exclusive_minimum=True) * GB)
            if "memory_gb" in d else inherited.memory_bytes,
            memory_bandwidth_bytes_per_s=v.number(d, "memory_bandwidth_gbps", path, minimum=0, exclusive_minimum=True) * 1e9
            if "memory_bandwidth_gbps" in d else inherited.memory_bandwidth_bytes_per_s,
            dense_bf16_flops=v.number(d, "bf16_tflops", path, minimum=0, exclusive_minimum=True) * 1e12
            if "bf16_tflops" in d else inherited.dense_bf16_flops,
            max_blocks=v.integer(d, "max_blocks", path, minimum=1) if "max_blocks" in d
            else (inherited.max_blocks if inherited else None),
            source=v.string(d, "source", path, default=inherited.source if inherited else "scenario-defined"),
        )
        for mname, cspec in v.mapping(d.get("calibration"), v.join(path, "calibration")).items():
            cpath = v.join(v.join(path, "calibration"), mname)
            if mname not in all_models:
                raise ScenarioError(cpath, f"unknown model {mname!r}; expected one of {sorted(all_models)}")
            cals[(mname, name)] = _parse_calibration(v.mapping(cspec, cpath), cpath, all_models[mname], name, base_dir)
    return base.extended(models=models, gpus=gpus, devices=devices, calibrations=cals)


def _parse_calibration(d: dict, path: str, model: ModelSpec, gpu: str, base_dir: str | None) -> Calibration:
    if "petals_json" in d:
        v.check_keys(d, path, ("petals_json", "entry"))
        ref = v.string(d, "petals_json", path)
        if ref in SHIPPED_PETALS_JSON:
            file = resources.files("distllm_env").joinpath(f"data/calibration/{SHIPPED_PETALS_JSON[ref]}")
        else:
            file = _resolve(ref, base_dir)
        return calibration_from_petals_json(file, v.string(d, "entry", path), model, gpu, path)
    v.check_keys(d, path, ("tau_decode_ms", "prefill_ms", "inference_rps", "forward_rps", "network_rps", "source"),
                 required=("tau_decode_ms", "prefill_ms"))
    tau = v.number(d, "tau_decode_ms", path, minimum=0, exclusive_minimum=True) * 1e-3
    pre = v.mapping(d["prefill_ms"], v.join(path, "prefill_ms"))
    v.check_keys(pre, v.join(path, "prefill_ms"), ("slope", "intercept"), required=("slope", "intercept"))
    slope = v.number(pre, "slope", v.join(path, "prefill_ms"), minimum=0) * 1e-3
    intercept = v.number(pre, "intercept", v.join(path, "prefill_ms"), minimum=0) * 1e-3
    return Calibration(
        model=model.name, gpu=gpu, tau_decode_s=tau, prefill_slope_s_per_token=slope, prefill_intercept_s=intercept,
        inference_rps=v.number(d, "inference_rps", path, default=1.0 / tau, minimum=0, exclusive_minimum=True),
        forward_rps=v.number(d, "forward_rps", path, default=1024.0 / (slope * 1024 + intercept)
                             if slope * 1024 + intercept > 0 else 1.0 / tau, minimum=0, exclusive_minimum=True),
        network_rps=v.number(d, "network_rps", path, default=3020.3700586885343 * 14336 / model.d_model,
                             minimum=0, exclusive_minimum=True),
        derived=False, source=v.string(d, "source", path, default="scenario-defined"),
    )


def _resolve(ref: str, base_dir: str | None) -> Path:
    p = Path(ref)
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def _parse_topology(value: Any, base_dir: str | None) -> TopologySpec:
    d = v.mapping(value, "topology")
    kinds = [k for k in ("repetita", "clusters", "geo") if k in d]
    v.check_keys(d, "topology", ("repetita", "clusters", "geo"))
    if len(kinds) != 1:
        raise ScenarioError("topology", "expected exactly one of 'repetita', 'clusters' or 'geo'")
    kind = kinds[0]
    if kind == "repetita":
        name = d["repetita"]
        if not isinstance(name, str):
            raise ScenarioError("topology.repetita", f"expected a topology name or .graph path, got {name!r}")
        if name not in REPETITA_TOPOLOGIES:
            p = _resolve(name, base_dir)
            if not (p.suffix == ".graph" and p.is_file()):
                raise ScenarioError("topology.repetita",
                                    f"expected one of {list(REPETITA_TOPOLOGIES)} or a .graph file path, got {name!r}")
            name = str(p)
        return RepetitaTopologySpec(name)
    if kind == "clusters":
        path = "topology.clusters"
        c = v.mapping(d["clusters"], path)
        v.check_keys(c, path, ("sizes", "intra_rtt_ms", "inter_rtt_ms", "intra_bandwidth_gbps", "inter_bandwidth_gbps"),
                     required=("sizes",))
        sizes = tuple(v.check_int(s, f"{path}.sizes.{i}", minimum=1)
                      for i, s in enumerate(v.sequence(c["sizes"], f"{path}.sizes")))
        if not sizes:
            raise ScenarioError(f"{path}.sizes", "expected at least one cluster")
        return ClusteredTopologySpec(
            sizes=sizes,
            intra_rtt_s=v.number(c, "intra_rtt_ms", path, default=5.0, minimum=0) * 1e-3,
            inter_rtt_s=v.number(c, "inter_rtt_ms", path, default=100.0, minimum=0) * 1e-3,
            intra_bandwidth_gbps=v.number(c, "intra_bandwidth_gbps", path, default=1.0, minimum=0, exclusive_minimum=True),
            inter_bandwidth_gbps=v.number(c, "inter_bandwidth_gbps", path, default=0.1, minimum=0, exclusive_minimum=True),
        )
    path = "topology.geo"
    g = v.mapping(d["geo"], path)
    v.check_keys(g, path, ("cities", "num_nodes", "regions", "k_nearest", "route_factor", "jitter_km"))
    if ("cities" in g) == ("num_nodes" in g):
        raise ScenarioError(path, "expected exactly one of 'cities' (explicit list) or 'num_nodes' (drawn per seed)")
    cities = None
    if "cities" in g:
        cities = tuple(str(c) for c in v.sequence(g["cities"], f"{path}.cities"))
        if not cities:
            raise ScenarioError(f"{path}.cities", "expected at least one city")
    regions = tuple(str(r) for r in v.sequence(g["regions"], f"{path}.regions")) if "regions" in g else None
    return GeoTopologySpec(
        cities=cities,
        num_nodes=v.integer(g, "num_nodes", path, minimum=1) if "num_nodes" in g else None,
        regions=regions,
        k_nearest=v.integer(g, "k_nearest", path, default=3, minimum=1),
        route_factor=v.number(g, "route_factor", path, default=1.5, minimum=1.0),
        jitter_km=v.number(g, "jitter_km", path, default=50.0, minimum=0),
    )


def _node_ref(value: Any, path: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ScenarioError(path, f"expected a node name or index, got {value!r}")
    return value


def _memory(d: Mapping, path: str) -> int | None:
    if "memory_gb" not in d:
        return None
    return int(v.number(d, "memory_gb", path, minimum=0, exclusive_minimum=True) * GB)


def _parse_servers(value: Any, catalog: Catalog):
    if isinstance(value, list):
        if not value:
            raise ScenarioError("servers", "expected at least one server")
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
    nodes = None
    if "nodes" in d:
        nodes = tuple(_node_ref(n, f"{path}.nodes.{i}") for i, n in enumerate(v.sequence(d["nodes"], f"{path}.nodes")))
    return ServerSampler(
        count=v.integer(d, "count", path, minimum=1) if "count" in d else None,
        fraction_of_nodes=v.number(d, "fraction_of_nodes", path, minimum=0, exclusive_minimum=True, maximum=1)
        if "fraction_of_nodes" in d else None,
        gpu_mix=tuple(mix), nodes=nodes,
        distinct_nodes=v.boolean(d, "distinct_nodes", path, default=True), memory_bytes=_memory(d, path),
    )


def _parse_clients(value: Any, catalog: Catalog):
    if isinstance(value, list):
        if not value:
            raise ScenarioError("clients", "expected at least one client")
        out = []
        for i, item in enumerate(value):
            path = f"clients.{i}"
            d = v.mapping(item, path)
            v.check_keys(d, path, ("node", "device", "weight"), required=("node",))
            device = v.string(d, "device", path, default=None) if d.get("device") is not None else None
            if device is not None:
                catalog.device(device, f"{path}.device")
            out.append(ClientSpec(node=_node_ref(d["node"], f"{path}.node"), device=device,
                                  weight=v.number(d, "weight", path, default=1.0, minimum=0, exclusive_minimum=True)))
        return tuple(out)
    d = v.mapping(value, "clients")
    path = "clients"
    v.check_keys(d, path, ("count", "nodes", "device"), required=("count",))
    device = v.string(d, "device", path, default=None) if d.get("device") is not None else None
    if device is not None:
        catalog.device(device, f"{path}.device")
    nodes = None
    if "nodes" in d:
        nodes = tuple(_node_ref(n, f"{path}.nodes.{i}") for i, n in enumerate(v.sequence(d["nodes"], f"{path}.nodes")))
    return ClientSampler(count=v.integer(d, "count", path, minimum=1), nodes=nodes, device=device)


def _parse_network(value: Any) -> NetworkSpec:
    path = "network"
    d = v.mapping(value, path)
    v.check_keys(d, path, ("token_overhead_ms", "prefill_overhead_ms", "initial_delay_ms"))
    defaults = NetworkSpec()
    slope, intercept = defaults.prefill_overhead_slope_s, defaults.prefill_overhead_intercept_s
    if "prefill_overhead_ms" in d:
        p = d["prefill_overhead_ms"]
        ppath = f"{path}.prefill_overhead_ms"
        if isinstance(p, (int, float)) and not isinstance(p, bool):
            slope, intercept = 0.0, v.check_number(p, ppath, minimum=0) * 1e-3
        else:
            pm = v.mapping(p, ppath)
            v.check_keys(pm, ppath, ("slope", "intercept"), required=("slope", "intercept"))
            slope = v.number(pm, "slope", ppath, minimum=0) * 1e-3
            intercept = v.number(pm, "intercept", ppath, minimum=0) * 1e-3
    return NetworkSpec(
        token_overhead_s=v.number(d, "token_overhead_ms", path, default=defaults.token_overhead_s * 1e3, minimum=0) * 1e-3,
        prefill_overhead_slope_s=slope, prefill_overhead_intercept_s=intercept,
        initial_delay_s=v.number(d, "initial_delay_ms", path, default=defaults.initial_delay_s * 1e3, minimum=0) * 1e-3,
    )


def _parse_length(value: Any, path: str) -> LengthDist:
    if not isinstance(value, Mapping):
        return LengthDist("fixed", value=v.check_int(value, path, minimum=1))
    d = v.mapping(value, path)
    dist = v.string(d, "dist", path, choices=("fixed", "uniform", "choice", "lognormal"))
    if dist == "fixed":
        v.check_keys(d, path, ("dist", "value"), required=("value",))
        return LengthDist("fixed", value=v.integer(d, "value", path, minimum=1))
    if dist == "uniform":
        v.check_keys(d, path, ("dist", "low", "high"), required=("low", "high"))
        low = v.integer(d, "low", path, minimum=1)
        high = v.integer(d, "high", path, minimum=low)
        return LengthDist("uniform", low=low, high=high)
    if dist == "choice":
        v.check_keys(d, path, ("dist", "values", "weights"), required=("values",))
        values = tuple(v.check_int(x, f"{path}.values.{i}", minimum=1)
                       for i, x in enumerate(v.sequence(d["values"], f"{path}.values")))
        if not values:
            raise ScenarioError(f"{path}.values", "expected at least one value")
        weights = ()
        if "weights" in d:
            weights = tuple(v.check_number(x, f"{path}.weights.{i}", minimum=0)
                            for i, x in enumerate(v.sequence(d["weights"], f"{path}.weights")))
            if len(weights) != len(values):
                raise ScenarioError(f"{path}.weights", f"expected {len(values)} weights (one per value), got {len(weights)}")
            if sum(weights) <= 0:
                raise ScenarioError(f"{path}.weights", "weights must not all be zero")
        return LengthDist("choice", values=values, weights=weights)
    v.check_keys(d, path, ("dist", "median", "sigma", "low", "high"), required=("median", "sigma", "low", "high"))
    low = v.integer(d, "low", path, minimum=1)
    return LengthDist("lognormal", median=v.number(d, "median", path, minimum=1),
                      sigma=v.number(d, "sigma", path, minimum=0), low=low, high=v.integer(d, "high", path, minimum=low))


def _parse_workload(value: Any, model: ModelSpec, base_dir: str | None) -> WorkloadSpec:
    path = "workload"
    d = v.mapping(value, path)
    v.check_keys(d, path, ("arrival", "arrival_rate_per_s", "trace", "num_requests", "prompt_tokens", "output_tokens"))
    defaults = WorkloadSpec()
    arrival = v.string(d, "arrival", path, default="poisson", choices=("poisson", "trace"))
    rate = v.number(d, "arrival_rate_per_s", path, default=defaults.arrival_rate_per_s, minimum=0, exclusive_minimum=True)
    trace = None
    num_requests = v.integer(d, "num_requests", path, minimum=1) if d.get("num_requests") is not None else None
    if arrival == "trace":
        trace = v.string(d, "trace", path)
        from .traces import load_trace

        tr = load_trace(trace, base_dir)
        if num_requests is not None and num_requests > len(tr.arrival_s):
            raise ScenarioError(f"{path}.num_requests",
                                f"trace {trace!r} holds {len(tr.arrival_s)} requests, asked for {num_requests}")
        if tr.prompt_tokens is not None:
            for k in ("prompt_tokens", "output_tokens"):
                if k in d:
                    raise ScenarioError(f"{path}.{k}", f"trace {trace!r} gives per-request lengths; remove this key")
        if tr.client is not None and tr.client.size and tr.client.min() < 0:
            raise ScenarioError(f"{path}.trace", "client indices in the trace must be ≥ 0")
    elif "trace" in d and d["trace"] is not None:
        raise ScenarioError(f"{path}.trace", "only used with 'arrival: trace'")
    if arrival == "poisson" and num_requests is None:
        num_requests = defaults.num_requests
    prompt = _parse_length(d["prompt_tokens"], f"{path}.prompt_tokens") if "prompt_tokens" in d else defaults.prompt_tokens
    output = _parse_length(d["output_tokens"], f"{path}.output_tokens") if "output_tokens" in d else defaults.output_tokens
    if prompt.max > model.max_sequence_tokens:
        raise ScenarioError(f"{path}.prompt_tokens", f"longest prompt {prompt.max} exceeds {model.name}'s maximum "
                                                     f"sequence of {model.max_sequence_tokens} tokens")
    if prompt.max + output.max > model.max_sequence_tokens:
        raise ScenarioError(f"{path}.output_tokens",
                            f"longest prompt + output ({prompt.max} + {output.max}) exceeds {model.name}'s maximum "
                            f"sequence of {model.max_sequence_tokens} tokens")
    return WorkloadSpec(arrival=arrival, arrival_rate_per_s=rate, trace=trace, num_requests=num_requests,
                        prompt_tokens=prompt, output_tokens=output)


def _parse_simulator(value: Any) -> SimulatorSpec:
    path = "simulator"
    d = v.mapping(value, path)
    v.check_keys(d, path, ("backoff", "reservation", "allocation_delay_s"))
    delays = {}
    for fam, sec in v.mapping(d.get("allocation_delay_s"), f"{path}.allocation_delay_s").items():
        if fam not in POLICY_FAMILIES:
            raise ScenarioError(f"{path}.allocation_delay_s.{fam}", f"unknown policy family; expected one of {list(POLICY_FAMILIES)}")
        delays[fam] = v.check_number(sec, f"{path}.allocation_delay_s.{fam}", minimum=0)
    return SimulatorSpec(
        backoff=v.boolean(d, "backoff", path, default=True),
        reservation=v.string(d, "reservation", path, default="calendar", choices=RESERVATION_MODES),
        allocation_delay_s=MappingProxyType(delays),
    )


def _parse_policy_defaults(value: Any) -> PolicyDefaults:
    path = "policy_defaults"
    d = v.mapping(value, path)
    v.check_keys(d, path, ("placement", "routing", "split", "options"))
    options = {}
    for name, opts in v.mapping(d.get("options"), f"{path}.options").items():
        options[name] = MappingProxyType(v.mapping(opts, f"{path}.options.{name}"))
    return PolicyDefaults(
        placement=v.string(d, "placement", path, default=None) if d.get("placement") is not None else None,
        routing=v.string(d, "routing", path, default=None) if d.get("routing") is not None else None,
        split=v.string(d, "split", path, default=None) if d.get("split") is not None else None,
        options=MappingProxyType(options),
    )


SPLIT_SLA_RULES = ("server_only_factor", "fixed")


def _parse_split(value: Any, catalog: Catalog, servers) -> SplitSpec:
    """Validate the optional ``split:`` section (schema in docs/split.md)."""
    from .split.models import get_layer_model, layer_model_names

    path = "split"
    d = v.mapping(value, path)
    v.check_keys(d, path, ("server", "network", "requests", "sla", "budget_steps", "delta_ms", "num_requests",
                           "arrival_grid"), required=("requests",))
    known = sorted(set(layer_model_names()) | set(catalog.models))
    reqs = []
    items = v.sequence(d["requests"], f"{path}.requests")
    if not items:
        raise ScenarioError(f"{path}.requests", "expected at least one request type")
    for i, item in enumerate(items):
        rpath = f"{path}.requests.{i}"
        r = v.mapping(item, rpath)
        v.check_keys(r, rpath, ("model", "prompt_tokens", "output_tokens", "weight"), required=("model", "prompt_tokens"))
        model = v.string(r, "model", rpath)
        if model not in known:
            raise ScenarioError(f"{rpath}.model", f"unknown layer model {model!r}; expected one of {known}")
        prompt = _parse_length(r["prompt_tokens"], f"{rpath}.prompt_tokens")
        output = _parse_length(r["output_tokens"], f"{rpath}.output_tokens") if "output_tokens" in r \
            else LengthDist("fixed", value=1)
        layer_model = get_layer_model(model, catalog, f"{rpath}.model")
        for lengths in ((prompt.max, output.max), (prompt.min, output.min)):
            layer_model.check_lengths(*lengths, path=rpath)
        reqs.append(SplitRequestSpec(model=model, prompt_tokens=prompt, output_tokens=output,
                                     weight=v.number(r, "weight", rpath, default=1.0, minimum=0, exclusive_minimum=True)))
    spath = f"{path}.server"
    srv = v.mapping(d.get("server"), spath)
    v.check_keys(srv, spath, ("index", "efficiency", "effective_tflops"))
    server_index = v.integer(srv, "index", spath, default=0, minimum=0)
    if isinstance(servers, tuple) and server_index >= len(servers):
        raise ScenarioError(f"{spath}.index", f"expected a server index in [0, {len(servers) - 1}], got {server_index}")
    npath = f"{path}.network"
    net = v.mapping(d.get("network"), npath)
    v.check_keys(net, npath, ("rtt_ms", "uplink_mbps", "downlink_mbps"))
    sla_path = f"{path}.sla"
    sla = v.mapping(d.get("sla"), sla_path)
    rule = v.string(sla, "rule", sla_path, default="server_only_factor", choices=SPLIT_SLA_RULES)
    if rule == "fixed":
        v.check_keys(sla, sla_path, ("rule", "ms"), required=("ms",))
    else:
        v.check_keys(sla, sla_path, ("rule", "factor"))
    gpath = f"{path}.arrival_grid"
    grid = v.mapping(d.get("arrival_grid"), gpath)
    v.check_keys(grid, gpath, ("base_per_s", "factor"))

    def opt(m, key, p, scale, **kw):
        return v.number(m, key, p, **kw) * scale if m.get(key) is not None else None

    return SplitSpec(
        requests=tuple(reqs), sla_rule=rule,
        sla_factor=v.number(sla, "factor", sla_path, default=1.5, minimum=0, exclusive_minimum=True),
        sla_fixed_s=opt(sla, "ms", sla_path, 1e-3, minimum=0, exclusive_minimum=True),
        budget_steps=v.integer(d, "budget_steps", path, default=1000, minimum=1, maximum=10**6),
        delta_s=opt(d, "delta_ms", path, 1e-3, minimum=0, exclusive_minimum=True),
        server_index=server_index,
        server_efficiency=v.number(srv, "efficiency", spath, default=0.3, minimum=0, exclusive_minimum=True, maximum=1),
        server_effective_flops=opt(srv, "effective_tflops", spath, 1e12, minimum=0, exclusive_minimum=True),
        rtt_s=opt(net, "rtt_ms", npath, 1e-3, minimum=0),
        uplink_bits_per_s=opt(net, "uplink_mbps", npath, 1e6, minimum=0, exclusive_minimum=True),
        downlink_bits_per_s=opt(net, "downlink_mbps", npath, 1e6, minimum=0, exclusive_minimum=True),
        num_requests=v.integer(d, "num_requests", path, default=2000, minimum=1),
        arrival_base_per_s=v.number(grid, "base_per_s", gpath, default=1.0, minimum=0, exclusive_minimum=True),
        arrival_factor=v.number(grid, "factor", gpath, default=1.1, minimum=1, exclusive_minimum=True),
    )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(x) for k, x in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(x) for x in obj]
    return obj


__all__ = [
    "ClientSampler", "ClientSpec", "ClusteredTopologySpec", "GeoTopologySpec", "LengthDist", "NetworkSpec",
    "PolicyDefaults", "RepetitaTopologySpec", "Scenario", "ServerSampler", "ServerSpec", "SimulatorSpec",
    "SplitRequestSpec", "SplitSpec",
    "WorkloadSpec", "apply_overrides", "list_presets", "load_scenario", "parse_scenario",
]

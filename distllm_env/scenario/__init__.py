"""Scenarios: YAML presets and files validated into frozen dataclasses (docs/contracts.md §3).

``load_scenario("paper-clustered")`` loads a shipped preset, ``load_scenario("my.yaml")`` a file,
and ``overrides=["workload.arrival_rate_per_s=0.5"]`` applies ``--set`` style overrides to the raw
YAML before validation.  Every malformed field raises :class:`~distllm_env.errors.ScenarioError`
naming its dotted path and what was expected.  Data files are read by
:mod:`distllm_env.yaml_safe` (inert data only) and bounded by :mod:`distllm_env.limits`.

The package's modules:

* :mod:`.specs` — the frozen section dataclasses;
* :mod:`.loading` — presets, files, :func:`load_scenario`;
* :mod:`.overrides` — ``--set PATH=VALUE``;
* :mod:`.sections` — the section parsers (topology, servers, clients, network, workload,
  simulator, policy_defaults);
* :mod:`.parsing` — :class:`Scenario` and :func:`parse_scenario`.

The catalog sections are parsed by :mod:`distllm_env.catalog_parse`, the ``split:`` section by
:mod:`distllm_env.split.section`, token lengths by :mod:`distllm_env.lengths`.

A scenario is a *specification*: samplers (``servers: {fraction_of_nodes: …}``, ``clients:
{count: …}``, ``topology: {geo: {num_nodes: …}}``) are drawn per seed from the ``instance`` random
stream by :func:`distllm_env.instance.build_instance`, which also runs the checks that need the
drawn topology.
"""

from ..catalog_parse import QUANTIZATION_BYTES, SHIPPED_PETALS_JSON
from ..split.section import SPLIT_SLA_RULES
from .loading import list_presets, load_scenario, preset_path, read_scenario_yaml
from .overrides import apply_overrides, parse_override
from .parsing import Scenario, parse_scenario
from .specs import (POLICY_FAMILIES, RESERVATION_MODES, TOP_LEVEL_KEYS, ClientSampler, ClientSpec,
                    ClusteredTopologySpec, GeoTopologySpec, LengthDist, NetworkSpec, PolicyDefaults,
                    RepetitaTopologySpec, ServerSampler, ServerSpec, SimulatorSpec, SplitRequestSpec, SplitSpec,
                    TopologySpec, WorkloadSpec)

__all__ = [
    "ClientSampler", "ClientSpec", "ClusteredTopologySpec", "GeoTopologySpec", "LengthDist", "NetworkSpec",
    "POLICY_FAMILIES", "PolicyDefaults", "QUANTIZATION_BYTES", "RESERVATION_MODES", "RepetitaTopologySpec",
    "SHIPPED_PETALS_JSON", "SPLIT_SLA_RULES", "Scenario", "ServerSampler", "ServerSpec", "SimulatorSpec",
    "SplitRequestSpec", "SplitSpec", "TOP_LEVEL_KEYS", "TopologySpec", "WorkloadSpec", "apply_overrides",
    "list_presets", "load_scenario", "parse_override", "parse_scenario", "preset_path", "read_scenario_yaml",
]

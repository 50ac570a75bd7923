"""The :class:`Scenario` type and :func:`parse_scenario`, which validates a raw mapping section by
section (docs/contracts.md §3).

Parsing checks each field on its own and across sections where no drawn instance is needed; checks
that need the concrete topology (node names, connectivity, distinct-node counts) happen in
:func:`distllm_env.instance.build_instance` (``distllm-env scenarios validate`` builds the seed-0
instance for that).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from .. import validation as v
from ..catalog import Catalog, ModelSpec
from ..catalog_parse import parse_catalog
from ..split.section import parse_split
from ..yaml_safe import dump_yaml
from .churn_section import ChurnSpec, parse_churn
from .fidelity import DEFAULT_FIDELITY, FidelitySpec, parse_fidelity
from .overrides import apply_overrides
from .sections import (parse_clients, parse_network, parse_policy_defaults, parse_servers, parse_simulator,
                       parse_topology, parse_workload)
from .specs import (TOP_LEVEL_KEYS, ClientSampler, ClientSpec, NetworkSpec, PolicyDefaults, ServerSampler,
                    ServerSpec, SimulatorSpec, SplitSpec, TopologySpec, WorkloadSpec)


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
    #: the ``fidelity:`` readings (docs/fidelity.md "Fidelity modes"; default ``contracts``)
    fidelity: FidelitySpec = DEFAULT_FIDELITY
    #: the ``churn:`` section (docs/scenarios.md "Churn"); ``None``: servers never leave
    churn: ChurnSpec | None = None

    @property
    def model(self) -> ModelSpec:
        return self.catalog.model(self.model_name)

    @property
    def hash(self) -> str:
        """Content hash: sha256 of the canonical JSON of the raw scenario after overrides (12 hex).
        Linear in the size of ``raw`` (data files hold no aliases, so nothing expands)."""
        text = json.dumps(_jsonable(self.raw), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def max_prompt_tokens(self) -> int:
        """Longest admitted prompt (tokens) a planner plans prefill for (see :meth:`planning_lengths`)."""
        return self.planning_lengths().max_prompt_tokens

    @property
    def max_output_tokens(self) -> int:
        """l_max: longest admitted output (tokens; truncated), or with unknown lengths the longest
        declared one, ``max_length −`` the shortest admitted prompt (see :meth:`planning_lengths`)."""
        return self.planning_lengths().max_output_tokens

    @property
    def max_session_tokens(self) -> int:
        """Longest prompt + output one session reserves K/V for (tokens, ≤ the model's maximum
        sequence; ``max_length`` with unknown lengths): what s_c is sized by (docs/contracts.md §3)."""
        return self.planning_lengths().max_session_tokens

    def planning_lengths(self):
        """:class:`distllm_env.lengths.PlanningLengths` of this scenario; only admitted requests count
        (docs/scenarios.md, "Over-length requests"; docs/contracts.md §3, "Planning lengths")."""
        from ..lengths import planning_lengths
        from ..traces import load_trace, trace_window

        wl = self.workload
        prompt, output = wl.prompt_tokens, wl.output_tokens
        if wl.arrival == "trace":
            tr = load_trace(wl.trace, self.base_dir)
            if tr.prompt_tokens is not None:
                a, b = trace_window(tr, wl.trace_offset_requests, wl.trace_offset_s, wl.num_requests)
                prompt, output = tr.prompt_tokens[a:b], tr.output_tokens[a:b]
        return planning_lengths(prompt, output, self.model.max_sequence_tokens, wl.over_length,
                                wl.output_tokens_known, wl.max_length)

    def _planning_maxima(self) -> tuple[int, int]:
        """Deprecated alias: (``max_prompt_tokens``, ``max_output_tokens``)."""
        pl = self.planning_lengths()
        return pl.max_prompt_tokens, pl.max_output_tokens

    def with_overrides(self, overrides: Sequence[str]) -> "Scenario":
        """A new scenario with ``--set PATH=VALUE`` overrides applied on top of this one's.
        Raises :class:`~distllm_env.errors.ScenarioError`."""
        if not overrides:
            return self
        raw = apply_overrides(self.raw, overrides)
        return parse_scenario(raw, source=self.source, base_dir=self.base_dir,
                              overrides=self.overrides + tuple(overrides))

    def to_yaml(self) -> str:
        return dump_yaml(_jsonable(self.raw))

    def __repr__(self) -> str:
        return f"Scenario({self.name!r}, model={self.model_name!r}, hash={self.hash})"

    def __reduce__(self):
        return (_rebuild_scenario, (_jsonable(self.raw), self.source, self.base_dir, self.overrides))


def _rebuild_scenario(raw, source, base_dir, overrides):
    return parse_scenario(raw, source=source, base_dir=base_dir, overrides=tuple(overrides))


def parse_scenario(raw: Mapping, source: str = "<dict>", base_dir: str | None = None,
                   overrides: Sequence[str] = ()) -> Scenario:
    """Validate a raw mapping into a :class:`Scenario`.

    Builds no instance: node names and connectivity are checked by
    :func:`distllm_env.instance.build_instance`.

    Raises:
        ScenarioError: naming the field's dotted path and what was expected."""
    raw = v.mapping(raw, "")
    v.check_keys(raw, "", TOP_LEVEL_KEYS, required=("model", "topology", "servers", "clients"))
    name = v.string(raw, "name", "", default=Path(source).stem if source != "<dict>" else "unnamed")
    description = v.string(raw, "description", "", default="")
    catalog = parse_catalog(raw, base_dir)
    model_name = v.string(raw, "model", "")
    model = catalog.model(model_name, "model")
    topology = parse_topology(raw.get("topology"), base_dir)
    servers = parse_servers(raw.get("servers"), catalog)
    clients = parse_clients(raw.get("clients"), catalog)
    network = parse_network(raw.get("network"))
    workload = parse_workload(raw.get("workload"), model, base_dir)
    simulator = parse_simulator(raw.get("simulator"))
    policy_defaults = parse_policy_defaults(raw.get("policy_defaults"))
    split = parse_split(raw["split"], catalog, servers) if raw.get("split") is not None else None
    fidelity = parse_fidelity(raw.get("fidelity"))
    churn = parse_churn(raw.get("churn"), base_dir)
    return Scenario(
        name=name, description=description, model_name=model_name, catalog=catalog, topology=topology,
        servers=servers, clients=clients, network=network, workload=workload, simulator=simulator,
        policy_defaults=policy_defaults, raw=MappingProxyType(copy.deepcopy(dict(raw))), source=source,
        base_dir=base_dir, overrides=tuple(overrides), split=split, fidelity=fidelity, churn=churn,
    )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(x) for k, x in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(x) for x in obj]
    return obj


__all__ = ["Scenario", "parse_scenario"]

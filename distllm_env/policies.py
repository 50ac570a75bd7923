"""Policy names, presets, families and loading by import path (CONTRACTS.md §4–5).

Names map to ``module:Class`` strings that are imported lazily, so the core never imports the
baselines at import time.  ``module:Class`` given by a user is imported the same way; any failure
raises :class:`PolicyLoadError` (exit code 2 in the CLI).  Options for a policy come from the
scenario's ``policy_defaults.options.<name>`` mapping and are passed to its constructor.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

from .errors import PolicyLoadError, ScenarioError

PLACEMENT_POLICIES: dict[str, str] = {
    "even": "distllm_env.baselines.simple:EvenPlacement",
    "random": "distllm_env.baselines.simple:RandomPlacement",
    "petals": "distllm_env.baselines.petals:PetalsPlacement",
    "cg-bp": "distllm_env.baselines.cg_bp:CGBPPlacement",
    "opt-order": "distllm_env.baselines.ablations:OptimizedOrderPlacement",
    "opt-number": "distllm_env.baselines.ablations:OptimizedNumberPlacement",
    "milp": "distllm_env.baselines.milp:MILPPlacement",
}

ROUTING_POLICIES: dict[str, str] = {
    "shortest": "distllm_env.baselines.simple:ShortestRouter",
    "random": "distllm_env.baselines.simple:RandomRouter",
    "round-robin": "distllm_env.baselines.simple:RoundRobinRouter",
    "petals": "distllm_env.baselines.petals:PetalsRouter",
    "ws-rr": "distllm_env.baselines.ws_rr:WSRRRouter",
    "opt-rr": "distllm_env.baselines.ablations:OptimizedRouter",
    "rr-ilp": "distllm_env.baselines.milp:RoutingILPRouter",
}

#: compare presets: name -> (placement, routing)
PRESETS: dict[str, tuple[str, str]] = {
    "petals": ("petals", "petals"),
    "proposed": ("cg-bp", "ws-rr"),
    "cg-bprr": ("cg-bp", "shortest"),
    "opt-order": ("opt-order", "petals"),
    "opt-number": ("opt-number", "petals"),
    "opt-rr": ("petals", "opt-rr"),
    "milp": ("milp", "shortest"),
}

#: allocation-delay families of CONTRACTS.md §4
FAMILIES: dict[str, str] = {
    "petals": "petals", "opt-order": "petals", "opt-number": "petals", "opt-rr": "petals",
    "proposed": "proposed", "cg-bprr": "proposed", "milp": "proposed",
}

DEFAULT_PLACEMENT_ORDER = ("cg-bp", "even")
DEFAULT_ROUTING_ORDER = ("ws-rr", "shortest")


def load_object(path: str) -> Any:
    """Import ``module:Attr`` (or ``module.Attr``) and return the attribute."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    elif "." in path:
        module_name, _, attr = path.rpartition(".")
    else:
        raise PolicyLoadError(f"{path!r} is not a known policy name or a 'module:Class' import path")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - report any import failure cleanly
        raise PolicyLoadError(f"cannot import module {module_name!r} for policy {path!r}: {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PolicyLoadError(f"module {module_name!r} has no attribute {attr!r} (policy {path!r})")
        obj = getattr(obj, part)
    return obj


def _instantiate(obj: Any, name: str, options: Mapping[str, Any], option_path: str) -> Any:
    if inspect.isclass(obj):
        try:
            return obj(**dict(options))
        except TypeError as exc:
            raise ScenarioError(option_path, f"bad options for policy {name!r}: {exc}") from None
    if options:
        raise ScenarioError(option_path, f"policy {name!r} is an object; options cannot be applied")
    return obj


def _options(scenario, name: str) -> Mapping[str, Any]:
    if scenario is None:
        return {}
    return scenario.policy_defaults.options.get(name, {})


def make_placement(spec: Any, scenario=None, options: Mapping[str, Any] | None = None):
    """A placement policy from a registered name, a ``module:Class`` path, or a policy object."""
    if not isinstance(spec, str):
        return spec
    opts = dict(_options(scenario, spec)) | dict(options or {})
    if spec in PLACEMENT_POLICIES:
        return _instantiate(load_object(PLACEMENT_POLICIES[spec]), spec, opts, f"policy_defaults.options.{spec}")
    if ":" in spec:
        return _instantiate(load_object(spec), spec, opts, f"policy_defaults.options.{spec}")
    raise PolicyLoadError(f"unknown placement {spec!r}; expected one of {sorted(PLACEMENT_POLICIES)} or module:Class")


def make_routing(spec: Any, scenario=None, options: Mapping[str, Any] | None = None):
    """A routing policy from a registered name, a ``module:Class`` path, or a policy object."""
    if not isinstance(spec, str):
        return spec
    opts = dict(_options(scenario, spec)) | dict(options or {})
    if spec in ROUTING_POLICIES:
        return _instantiate(load_object(ROUTING_POLICIES[spec]), spec, opts, f"policy_defaults.options.{spec}")
    if ":" in spec:
        return _instantiate(load_object(spec), spec, opts, f"policy_defaults.options.{spec}")
    raise PolicyLoadError(f"unknown routing {spec!r}; expected one of {sorted(ROUTING_POLICIES)} or module:Class")


def is_available(path: str) -> bool:
    """Whether a registered ``module:Class`` can be imported (a baseline may not be built yet)."""
    try:
        load_object(path)
    except PolicyLoadError:
        return False
    return True


def default_placement(scenario=None) -> str:
    """The scenario's ``policy_defaults.placement``, else ``cg-bp`` (``even`` while CG-BP is absent)."""
    if scenario is not None and scenario.policy_defaults.placement:
        return scenario.policy_defaults.placement
    return next(n for n in DEFAULT_PLACEMENT_ORDER if is_available(PLACEMENT_POLICIES[n]))


def default_routing(scenario=None) -> str:
    """The scenario's ``policy_defaults.routing``, else ``ws-rr`` (``shortest`` while WS-RR is absent)."""
    if scenario is not None and scenario.policy_defaults.routing:
        return scenario.policy_defaults.routing
    return next(n for n in DEFAULT_ROUTING_ORDER if is_available(ROUTING_POLICIES[n]))


def family_of(placement: Any, routing: Any) -> str:
    """Allocation-delay family of a placement + routing combination (CONTRACTS.md §4): the family of
    the compare preset they form, else ``default``."""
    p = placement if isinstance(placement, str) else getattr(placement, "name", None)
    r = routing if isinstance(routing, str) else getattr(routing, "name", None)
    for preset, (pp, rr) in PRESETS.items():
        if (pp, rr) == (p, r):
            return FAMILIES.get(preset, "default")
    return "default"


def split_policy_spec(spec: str) -> tuple[str, str, str]:
    """Resolve a compare policy (``PLACEMENT+ROUTER``, a preset, or ``module:Class``) into
    ``(label, placement, routing)``; ``routing`` is empty for a ``module:Class`` policy object that
    provides both decisions."""
    if spec in PRESETS:
        p, r = PRESETS[spec]
        return spec, p, r
    if "+" in spec:
        p, _, r = spec.partition("+")
        return spec, p, r
    if ":" in spec:
        return spec, spec, ""
    raise PolicyLoadError(f"unknown policy {spec!r}; expected a preset {sorted(PRESETS)}, PLACEMENT+ROUTER, "
                          "or module:Class")


__all__ = [
    "FAMILIES", "PLACEMENT_POLICIES", "PRESETS", "ROUTING_POLICIES", "default_placement", "default_routing",
    "family_of", "load_object", "make_placement", "make_routing", "split_policy_spec",
]

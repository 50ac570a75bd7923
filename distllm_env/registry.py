"""The policy registry: names, compare presets, allocation-delay families, and policy resolution
(docs/contracts.md §4–5).

Registered names map to ``module:Class`` strings that are imported lazily, so the core never imports
the baselines at import time.  Options for a policy come from the scenario's
``policy_defaults.options.<name>`` mapping (and from Python keyword arguments) and go to its
constructor; bad or unknown options raise :class:`ScenarioError` at
``policy_defaults.options.<name>.<option>`` (:mod:`distllm_env.policy_options`).

Trust boundary (README, "Trust boundary"): an import path (``module:Class``) is imported only when the
user gave it explicitly (CLI flag, Python argument).  A scenario's ``policy_defaults.placement`` /
``routing`` must be a registered name unless the caller passes ``allow_imports=True`` (CLI
``--allow-import``); see :func:`check_scenario_policies`.

A resolved policy is checked at resolution time: a placement must have ``place(instance, rng)``, a
router ``route(request, view, rng)``; otherwise :class:`PolicyLoadError` names the field it came from.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from .errors import DistLLMError, PolicyLoadError, ScenarioError
from .imports import is_import_path, load_object
from .policy_options import check_option_names, option_path

PLACEMENT_POLICIES: dict[str, str] = {
    "even": "distllm_env.baselines.simple:EvenPlacement",
    "random": "distllm_env.baselines.simple:RandomPlacement",
    "petals": "distllm_env.baselines.petals:PetalsPlacement",
    "cg-bp": "distllm_env.baselines.cg_bp:CGBPPlacement",
    "opt-order": "distllm_env.baselines.ablations:OptimizedOrderPlacement",
    "opt-number": "distllm_env.baselines.ablations:OptimizedNumberPlacement",
    "milp": "distllm_env.baselines.milp:MILPPlacement",
    "cg-bp-tuned": "distllm_env.baselines.cg_bp_tuned:CGBPTunedPlacement",
}

ROUTING_POLICIES: dict[str, str] = {
    "shortest": "distllm_env.baselines.simple:ShortestRouter",
    "random": "distllm_env.baselines.simple:RandomRouter",
    "round-robin": "distllm_env.baselines.simple:RoundRobinRouter",
    "petals": "distllm_env.baselines.petals:PetalsRouter",
    "ws-rr": "distllm_env.baselines.ws_rr:WSRRRouter",
    "ws-rr-load": "distllm_env.baselines.ws_rr_load:WSRRLoadRouter",
    "opt-rr": "distllm_env.baselines.ablations:OptimizedRouter",
    "rr-ilp": "distllm_env.baselines.milp:RoutingILPRouter",
    "lookahead": "distllm_env.baselines.lookahead:LookaheadRouter",
}

#: compare presets: name -> (placement, routing)
PRESETS: dict[str, tuple[str, str]] = {
    "petals": ("petals", "petals"),
    "proposed": ("cg-bp", "ws-rr"),
    "proposed-load": ("cg-bp", "ws-rr-load"),
    "cg-bprr": ("cg-bp", "shortest"),
    "opt-order": ("opt-order", "petals"),
    "opt-number": ("opt-number", "petals"),
    "opt-rr": ("petals", "opt-rr"),
    "milp": ("milp", "shortest"),
    "proposed-tuned": ("cg-bp-tuned", "ws-rr"),
    "proposed-lookahead": ("cg-bp", "lookahead"),
}

#: allocation-delay family of each compare preset (docs/contracts.md §4); every other combination is
#: family ``default``.  The only copy of this rule: use :func:`family_of` / :func:`preset_family`.
FAMILIES: dict[str, str] = {
    "petals": "petals", "opt-order": "petals", "opt-number": "petals", "opt-rr": "petals",
    "proposed": "proposed", "proposed-load": "proposed", "cg-bprr": "proposed", "milp": "proposed",
    "proposed-tuned": "proposed", "proposed-lookahead": "proposed",
}

DEFAULT_PLACEMENT_ORDER = ("cg-bp", "even")
DEFAULT_ROUTING_ORDER = ("ws-rr", "shortest")

#: what each kind of policy must provide, for the resolution-time check
_KINDS = {"placement": ("place", "place(instance, rng)", PLACEMENT_POLICIES),
          "routing": ("route", "route(request, view, rng)", ROUTING_POLICIES)}

#: the refusal of an import path in a scenario file; ``{kind}`` is ``placement`` or ``routing``
IMPORT_REFUSED = "import paths in scenario files are refused; pass --{kind}/--allow-import or allow_imports=True"


# --------------------------------------------------------------------------------------------------
# families and allocation delays (single home)
# --------------------------------------------------------------------------------------------------

def preset_family(preset: str) -> str:
    """Allocation-delay family of a compare preset (``default`` for anything else)."""
    return FAMILIES.get(preset, "default")


def family_of(placement: Any, routing: Any) -> str:
    """Allocation-delay family of a placement + routing combination (docs/contracts.md §4): the
    family of the compare preset they form, else ``default``.  Names or policy objects (their
    ``name`` attribute) are accepted."""
    p = placement if isinstance(placement, str) else getattr(placement, "name", None)
    r = routing if isinstance(routing, str) else getattr(routing, "name", None)
    for preset, pair in PRESETS.items():
        if pair == (p, r):
            return preset_family(preset)
    return "default"


def family_delay_s(delays: Mapping[str, float], family: str) -> float:
    """The allocation delay (s) charged per request to ``family`` by a ``{family: delay_s}`` mapping
    (the scenario's ``simulator.allocation_delay_s``): the family's entry, else ``default``'s, else 0.
    The one place this lookup is written (docs/contracts.md §4)."""
    return float(delays.get(family, delays.get("default", 0.0)))


# --------------------------------------------------------------------------------------------------
# the scenario's defaults (the trust boundary)
# --------------------------------------------------------------------------------------------------

def _scenario_policy(scenario, kind: str, allow_imports: bool) -> str | None:
    """The scenario's ``policy_defaults.<kind>``, checked: a registered name, or an import path only
    when ``allow_imports``.  Raises :class:`ScenarioError` at ``policy_defaults.<kind>``."""
    if scenario is None:
        return None
    spec = getattr(scenario.policy_defaults, kind)
    if not spec:
        return None
    registry = _KINDS[kind][2]
    if spec in registry:
        return spec
    path = f"policy_defaults.{kind}"
    if is_import_path(spec):
        if allow_imports:
            return spec
        raise ScenarioError(path, f"{spec!r} is an import path; {IMPORT_REFUSED.format(kind=kind)}")
    raise ScenarioError(path, f"unknown {kind} policy {spec!r}; expected one of {sorted(registry)}")


def check_scenario_policies(scenario, allow_imports: bool = False) -> None:
    """Refuse a scenario whose ``policy_defaults.placement`` / ``routing`` is not a registered name
    (an import path is accepted only with ``allow_imports=True``, CLI ``--allow-import``).  Called by
    every entry point that loads a scenario before any policy is resolved.  Raises
    :class:`ScenarioError`."""
    for kind in _KINDS:
        _scenario_policy(scenario, kind, allow_imports)
    check_policy_options(scenario)


def check_policy_options(scenario) -> None:
    """Check every ``policy_defaults.options.<name>`` section whose ``<name>`` is a registered
    placement or routing policy, as resolving that policy would (unknown option names, bad values),
    whether or not the scenario's defaults use it — so ``scenarios validate`` refuses what
    ``simulate --placement <name>`` would.  A name registered for both decisions (``petals``,
    ``random``) passes if either class accepts the options.  Sections keyed by an import path are not
    checked (that would import user code).  Only registered, built-in classes are constructed.

    Raises:
        ScenarioError: at ``policy_defaults.options.<name>[.<option>]``."""
    for name, opts in scenario.policy_defaults.options.items():
        errors = []
        kinds = [registry[name] for _, _, registry in _KINDS.values() if name in registry]
        for path in kinds:
            try:
                instantiate(load_object(path, field=f"policy_defaults.options.{name}"), name, opts)
            except ScenarioError as exc:
                errors.append(exc)
            else:
                break
        else:
            if errors:
                raise errors[0]


def is_available(path: str) -> bool:
    """Whether a registered ``module:Class`` can be imported (a baseline may not be built yet)."""
    try:
        load_object(path, field="registry")
    except PolicyLoadError:
        return False
    return True


def default_placement(scenario=None, *, allow_imports: bool = False) -> str:
    """The scenario's ``policy_defaults.placement``, else ``cg-bp`` (``even`` while CG-BP is absent).
    Raises :class:`ScenarioError` for an import path unless ``allow_imports``."""
    spec = _scenario_policy(scenario, "placement", allow_imports)
    if spec:
        return spec
    return next(n for n in DEFAULT_PLACEMENT_ORDER if is_available(PLACEMENT_POLICIES[n]))


def default_routing(scenario=None, *, allow_imports: bool = False) -> str:
    """The scenario's ``policy_defaults.routing``, else ``ws-rr`` (``shortest`` while WS-RR is absent).
    Raises :class:`ScenarioError` for an import path unless ``allow_imports``."""
    spec = _scenario_policy(scenario, "routing", allow_imports)
    if spec:
        return spec
    return next(n for n in DEFAULT_ROUTING_ORDER if is_available(ROUTING_POLICIES[n]))


# --------------------------------------------------------------------------------------------------
# construction
# --------------------------------------------------------------------------------------------------

def _options(scenario, name: str) -> Mapping[str, Any]:
    if scenario is None:
        return {}
    return scenario.policy_defaults.options.get(name, {})


def instantiate(obj: Any, name: str, options: Mapping[str, Any]) -> Any:
    """``obj(**options)`` for a class (unknown option names and constructor errors raise
    :class:`ScenarioError` at ``policy_defaults.options.<name>[.<option>]``); any other object is
    returned as is (it cannot take options)."""
    if inspect.isclass(obj):
        check_option_names(obj, name, options)
        try:
            return obj(**dict(options))
        except DistLLMError:
            raise
        except (TypeError, ValueError) as exc:
            raise ScenarioError(option_path(name), f"bad options for policy {name!r}: "
                                                   f"{' '.join(str(exc).split())[:200]}") from None
    if options:
        raise ScenarioError(option_path(name), f"policy {name!r} is not a class; options cannot be applied")
    return obj


def _make(kind: str, spec: Any, scenario, options: Mapping[str, Any] | None, field: str) -> Any:
    method, signature, registry = _KINDS[kind]
    if isinstance(spec, str):
        opts = dict(_options(scenario, spec)) | dict(options or {})
        if spec in registry:
            factory = load_object(registry[spec], field=field)
        elif is_import_path(spec):
            factory = load_object(spec, field=field)
        else:
            raise PolicyLoadError(f"{field}: unknown {kind} {spec!r}; expected one of {sorted(registry)} "
                                  "or module:Class")
        # checked on the class (its attributes) BEFORE it is constructed: an imported class that is no
        # policy (e.g. subprocess:Popen) must never run with the scenario's options
        if not callable(getattr(factory, method, None)):
            raise PolicyLoadError(f"{field}: {spec} has no {signature} method")
        obj = instantiate(factory, spec, opts)
        label = spec
    else:
        obj, label = spec, str(getattr(spec, "name", type(spec).__name__))
    if not callable(getattr(obj, method, None)):
        raise PolicyLoadError(f"{field}: {label} has no {signature} method")
    return obj


def make_placement(spec: Any, scenario=None, options: Mapping[str, Any] | None = None, *,
                   field: str = "placement") -> Any:
    """A placement policy from a registered name, a ``module:Class`` path (imported: pass only paths
    the user gave), or a policy object.  ``field`` names the source in messages (``--placement``,
    ``policy_defaults.placement``, ``config.placement``).  Raises :class:`PolicyLoadError` (unknown
    name, failed import, no ``place`` method) or :class:`ScenarioError` (bad options)."""
    return _make("placement", spec, scenario, options, field)


def make_routing(spec: Any, scenario=None, options: Mapping[str, Any] | None = None, *,
                 field: str = "routing") -> Any:
    """A routing policy from a registered name, a ``module:Class`` path, or a policy object (see
    :func:`make_placement`; the method checked is ``route``).

    Raises:
        PolicyLoadError: unknown name, failed import, or no ``route`` method.
        ScenarioError: bad options."""
    return _make("routing", spec, scenario, options, field)


def resolve_placement(spec: Any, scenario=None, *, allow_imports: bool = False, field: str = "placement") -> Any:
    """:func:`make_placement` of ``spec``, or of the scenario's default when ``spec`` is None (checked
    by :func:`default_placement`, reported at ``policy_defaults.placement``).

    Raises:
        ScenarioError: the scenario's default is an import path and ``allow_imports`` is false, or
            an option is bad.
        PolicyLoadError: as :func:`make_placement` (unknown name, failed import, no ``place``)."""
    if spec is None:
        spec = default_placement(scenario, allow_imports=allow_imports)
        field = "policy_defaults.placement"
    return make_placement(spec, scenario, field=field)


def resolve_routing(spec: Any, scenario=None, *, allow_imports: bool = False, field: str = "routing") -> Any:
    """:func:`make_routing` of ``spec``, or of the scenario's default when ``spec`` is None.

    Raises:
        ScenarioError: the scenario's default is an import path and ``allow_imports`` is false, or
            an option is bad.
        PolicyLoadError: as :func:`make_routing` (unknown name, failed import, no ``route``)."""
    if spec is None:
        spec = default_routing(scenario, allow_imports=allow_imports)
        field = "policy_defaults.routing"
    return make_routing(spec, scenario, field=field)


def split_policy_spec(spec: str) -> tuple[str, str, str]:
    """Resolve a compare policy (``PLACEMENT+ROUTER``, a preset, or ``module:Class``) into
    ``(label, placement, routing)``; ``routing`` is empty for a ``module:Class`` policy object that
    provides both decisions.  Raises :class:`PolicyLoadError`."""
    if spec in PRESETS:
        p, r = PRESETS[spec]
        return spec, p, r
    if "+" in spec:
        p, _, r = spec.partition("+")
        return spec, p, r
    if is_import_path(spec):
        return spec, spec, ""
    raise PolicyLoadError(f"unknown policy {spec!r}; expected a preset {sorted(PRESETS)}, PLACEMENT+ROUTER, "
                          "or module:Class")


__all__ = [
    "DEFAULT_PLACEMENT_ORDER", "DEFAULT_ROUTING_ORDER", "FAMILIES", "IMPORT_REFUSED", "PLACEMENT_POLICIES", "PRESETS",
    "ROUTING_POLICIES", "check_scenario_policies", "default_placement", "default_routing", "family_delay_s",
    "family_of", "instantiate", "is_available", "load_object", "make_placement", "make_routing", "preset_family",
    "resolve_placement", "resolve_routing", "split_policy_spec",
]

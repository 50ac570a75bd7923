"""Helpers for users' own CI: ``assert_beats(policy, baseline, scenario, seeds, margin)``.

    from distllm_env.testing import assert_beats
    contended = ["workload.arrival_rate_per_s=4", "workload.num_requests=400",
                 "policy_defaults.options.cg-bp.arrival_rate_per_s=0.5"]
    assert_beats("my_pkg.routing:MyRouter", "petals", "paper-bellcanada", seeds=range(10_000, 10_005),
                 margin=0.1, overrides=contended)

passes iff, over the paired seeds, the policy's mean ``mean_per_token_time_s`` ≤ (1 − margin) × the
baseline's; otherwise it raises ``AssertionError`` showing the per-seed table.

**Like for like.** Only the decision the policy makes is compared; the other decision is shared:

* a *routing* policy (``route`` only, a router name such as ``ws-rr``, or a learned router) runs
  against the **baseline's router under the same placement**: ``placement=`` if given, else the
  policy's own ``place`` (a learned router's training placement), else the scenario's default
  placement (CG-BP).  ``"petals"`` as the baseline of a router therefore means PETALS' *routing* on
  that placement, not PETALS' placement + routing;
* a *placement* policy (``place`` only, a placement name, or a learned placement) runs against the
  **baseline's placement under the same router**: ``routing=`` if given, else the policy's own
  ``route`` (a learned placement's env router), else the scenario's default router (WS-RR);
* a policy that makes **both** decisions (a preset such as ``proposed``, ``PLACEMENT+ROUTER``, or an
  object whose ``place`` and ``route`` are both its own) is compared end to end with the baseline as
  given (a preset ``petals`` is PETALS placement + routing).

``decision="routing" | "placement" | "both"`` overrides the detection.  Policies are compare specs
(presets, ``PLACEMENT+ROUTER``, names, ``module:Class``) or policy objects.  All allocation delays are
0 unless ``allocation_delays`` gives another rule (:func:`distllm_env.compare.parse_allocation_delays`):
``"equal:60"`` charges 60 s per request to both policies (a learned one included), ``"scenario"``
the scenario's per-family delays, ``"zero"`` none, ``"auto"`` as ``compare``, or a
``{family: seconds}`` mapping (docs/contracts.md §4).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .commands.common import format_table
from .allocation_delays import policy_family
from .compare import ComparePolicy, compare, construct_policy, object_label, parse_allocation_delays
from .errors import PolicyLoadError, ScenarioError
from .imports import load_object
from .registry import PLACEMENT_POLICIES, PRESETS, ROUTING_POLICIES, default_placement, default_routing, split_policy_spec
from .scenario import load_scenario

DECISIONS = ("routing", "placement", "both")
_LEARNED = {"RequestRouting": "routing", "BlockPlacement": "placement"}


def _label(x: Any) -> str:
    return x if isinstance(x, str) else object_label(x)     # as compare() labels an object


def _as_object(obj: Any, spec: Any) -> Any:
    return construct_policy(obj, spec)


def _parts(spec: Any) -> tuple[str, Any, Any, str]:
    """``(label, placement, routing, decision)`` of a spec; placement/routing is None where the spec
    does not provide that decision."""
    if isinstance(spec, str):
        if spec in PRESETS or "+" in spec:
            label, p, r = split_policy_spec(spec)
            return label, p, r, "both"
        if ":" in spec:
            return _parts_of_object(_as_object(load_object(spec, field="policy"), spec), spec)
        in_r, in_p = spec in ROUTING_POLICIES, spec in PLACEMENT_POLICIES
        if in_r and not in_p:
            return spec, None, spec, "routing"
        if in_p and not in_r:
            return spec, spec, None, "placement"
        if in_p and in_r:      # e.g. "random": a router and a placement
            return spec, spec, spec, "ambiguous"
        raise PolicyLoadError(f"unknown policy {spec!r}; expected a preset {sorted(PRESETS)}, a router "
                              f"{sorted(ROUTING_POLICIES)}, a placement {sorted(PLACEMENT_POLICIES)}, "
                              "PLACEMENT+ROUTER, or module:Class")
    return _parts_of_object(_as_object(spec, _label(spec)), _label(spec))


def _parts_of_object(obj: Any, label: str) -> tuple[str, Any, Any, str]:
    has_place, has_route = callable(getattr(obj, "place", None)), callable(getattr(obj, "route", None))
    if not (has_place or has_route):
        raise PolicyLoadError(f"policy {label!r} has neither place(instance, rng) nor route(request, view, rng)")
    decision = ("both" if has_place and has_route else "placement" if has_place else "routing")
    decision = _LEARNED.get(getattr(obj, "decision", None), decision)
    return _label(obj), obj if has_place else None, obj if has_route else None, decision


def fair_pair(policy: Any, baseline: Any, scenario: Any, *, placement: Any = None, routing: Any = None,
              decision: str | None = None) -> tuple[ComparePolicy, ComparePolicy, str]:
    """The two compare policies :func:`assert_beats` runs (see the module docstring), and the decision
    compared.  Raises :class:`~distllm_env.errors.ScenarioError` (a ``ValueError``; path ``decision``,
    ``placement`` or ``routing``) for a bad or missing ``decision`` or a ``placement``/``routing`` given for
    an end-to-end comparison, :class:`~distllm_env.errors.PolicyLoadError` for an unknown policy."""
    if decision is not None and decision not in DECISIONS:
        raise ScenarioError("decision", f"expected one of {DECISIONS}, got {decision!r}")
    p_label, p_place, p_route, p_dec = _parts(policy)
    b_label, b_place, b_route, b_dec = _parts(baseline)
    dec = decision or p_dec
    if p_dec == "ambiguous":
        dec = decision or (b_dec if b_dec in ("routing", "placement") else "")
        if dec not in ("routing", "placement"):
            raise ScenarioError("decision", f"{p_label!r} names both a router and a placement: pass decision='routing' or "
                             "decision='placement'")
        p_place, p_route = (None, p_route) if dec == "routing" else (p_place, None)
    if dec == "routing":
        if p_route is None or b_route is None:
            raise PolicyLoadError(f"routing comparison: {p_label!r} and {b_label!r} must both provide a router")
        shared = placement if placement is not None else p_place if p_place is not None else default_placement(scenario)
        if routing is not None:
            raise ScenarioError("routing", "routing= is only for comparing placements; give placement= for a router")
        pair = (ComparePolicy(f"{_label(shared)}+{p_label}", shared, p_route, policy_family(shared, p_route)),
                ComparePolicy(f"{_label(shared)}+{_label(b_route)}", shared, b_route, policy_family(shared, b_route)))
    elif dec == "placement":
        if p_place is None or b_place is None:
            raise PolicyLoadError(f"placement comparison: {p_label!r} and {b_label!r} must both provide a placement")
        shared = routing if routing is not None else p_route if p_route is not None else default_routing(scenario)
        if placement is not None:
            raise ScenarioError("placement", "placement= is only for comparing routers; give routing= for a placement")
        pair = (ComparePolicy(f"{p_label}+{_label(shared)}", p_place, shared, policy_family(p_place, shared)),
                ComparePolicy(f"{_label(b_place)}+{_label(shared)}", b_place, shared, policy_family(b_place, shared)))
    else:
        if placement is not None or routing is not None:
            raise ScenarioError("decision", f"{p_label!r} makes both decisions: placement=/routing= apply only to a router or a "
                             "placement (or pass decision='routing'/'placement')")
        pair = tuple(ComparePolicy(lbl, pl or default_placement(scenario), rt or default_routing(scenario),
                                   policy_family(pl, rt))
                     for lbl, pl, rt in ((p_label, p_place, p_route), (b_label, b_place, b_route)))
    cand, base = pair
    if cand.label == base.label:
        base = ComparePolicy(base.label + " (baseline)", base.placement, base.routing, base.family)
    return cand, base, dec


def assert_beats(policy: Any, baseline: Any, scenario: Any, seeds: Iterable[int] = range(10_000, 10_005),
                 margin: float = 0.0, overrides: Sequence[str] = (),
                 allocation_delays: "str | Mapping[str, float] | None" = None, *, placement: Any = None,
                 routing: Any = None, decision: str | None = None) -> dict:
    """Assert that ``policy`` beats ``baseline`` by ``margin`` on mean per-token time over paired
    seeds, like for like (module docstring: a router under the same placement, a placement under the
    same router).

    Returns the summary ``{"policy", "baseline", "decision", "policy_mean_s", "baseline_mean_s",
    "threshold_s", "margin", "seeds", "reduction", "allocation_delays", "allocation_delay_per_policy_s"}``
    (times in s per output token; reduction = 1 − policy/baseline; the rule as spelt by the flag and the
    delay in s charged to each of the two policies).  Raises :class:`AssertionError` (with the per-seed table) when it does not beat
    it, :class:`~distllm_env.errors.ScenarioError` (a ``ValueError``; path ``margin``, ``seeds``,
    ``decision``…) for a margin outside [0, 1), no seeds or a bad or missing ``decision``, and
    :class:`~distllm_env.errors.DistLLMError` subclasses for a bad scenario or policy."""
    if not 0.0 <= margin < 1.0:
        raise ScenarioError("margin", f"expected a value in [0, 1), got {margin}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ScenarioError("seeds", "expected at least one seed")
    sc = load_scenario(scenario, overrides)
    cand, base, dec = fair_pair(policy, baseline, sc, placement=placement, routing=routing, decision=decision)
    rule = parse_allocation_delays("zero" if allocation_delays is None else allocation_delays, "allocation_delays")
    res = compare(sc, [cand, base], seeds, allocation_delays=rule)
    p_label, b_label = cand.label, base.label
    by = {(r["policy"], r["seed"]): r["mean_per_token_time_s"] for r in res.per_seed}
    rows = []
    for s in seeds:
        p, b = by[(p_label, s)], by[(b_label, s)]
        rows.append({"seed": s, p_label: p, b_label: b, "ratio": p / b if b else float("nan")})
    p_mean = float(np.mean([r[p_label] for r in rows]))
    b_mean = float(np.mean([r[b_label] for r in rows]))
    summary = {"policy": p_label, "baseline": b_label, "decision": dec, "policy_mean_s": p_mean,
               "baseline_mean_s": b_mean, "threshold_s": (1 - margin) * b_mean, "margin": margin, "seeds": seeds,
               "reduction": 1 - p_mean / b_mean if b_mean else float("nan"),
               "allocation_delays": res.meta["allocation_delays_mode"],
               "allocation_delay_per_policy_s": res.meta["allocation_delay_per_policy_s"]}
    if not (np.isfinite(p_mean) and p_mean <= (1 - margin) * b_mean):
        raise AssertionError(
            f"{p_label} does not beat {b_label} by {margin:.0%} on {res.meta['scenario']} ({dec} compared): mean "
            f"per-token time {p_mean:.4f} s vs {b_mean:.4f} s (threshold {(1 - margin) * b_mean:.4f} s, reduction "
            f"{summary['reduction']:.1%}; allocation delays {res.meta['allocation_delays_mode']})\n" + format_table(rows + [{"seed": "mean", p_label: p_mean, b_label: b_mean,
                                                                      "ratio": p_mean / b_mean}]))
    return summary


__all__ = ["assert_beats", "fair_pair"]

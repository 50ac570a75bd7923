"""``compare()``: several policies on one scenario over paired seeds (CONTRACTS.md §5–6).

A compare policy is a preset name (``petals``, ``proposed``, ``cg-bprr``, …), ``PLACEMENT+ROUTER``,
or ``module:Class``.  A ``module:Class`` (or an object passed from Python) provides ``place(instance,
rng)``, ``route(request, view, rng)`` or both; the missing decision takes the scenario's default.
Every policy sees the same instance and workload per seed (common random numbers).

Allocation delays: the scenario's per-family delays apply, except that a comparison including a
user's or learned policy sets all delays equal (0) unless ``allocation_delays`` says otherwise
(CONTRACTS.md §4).  Every output states the delays used.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._version import __version__
from .api import ALLOCATION_DELAY_NOTE, SimulationResult, simulate
from .errors import PolicyLoadError
from .outputs import json_safe
from .policies import (FAMILIES, PRESETS, default_placement, default_routing, load_object, split_policy_spec)
from .scenario import Scenario, load_scenario

RESULT_COLUMNS = ("policy", "family", "mean_per_token_time_s", "mean_per_token_time_s_std", "ttft_p50_s",
                  "ttft_p95_s", "wait_mean_s", "algorithm_time_s", "num_rejected")


@dataclass(frozen=True)
class ComparePolicy:
    label: str
    placement: Any
    routing: Any
    family: str
    user: bool = False


def resolve_policy(spec: Any, scenario: Scenario) -> ComparePolicy:
    """Turn a compare policy spec into (placement, routing, family)."""
    if not isinstance(spec, str):
        return _from_object(spec, getattr(spec, "name", type(spec).__name__), scenario)
    label, p, r = split_policy_spec(spec)
    if r == "":  # module:Class
        return _from_object(load_object(p), label, scenario)
    family = FAMILIES.get(label, "default") if label in PRESETS else _pair_family(p, r)
    return ComparePolicy(label, p, r, family)


def _pair_family(p: str, r: str) -> str:
    for preset, pair in PRESETS.items():
        if pair == (p, r):
            return FAMILIES.get(preset, "default")
    return "default"


def _from_object(obj: Any, label: str, scenario: Scenario) -> ComparePolicy:
    if isinstance(obj, type):
        try:
            obj = obj()
        except TypeError as exc:
            raise PolicyLoadError(f"cannot construct policy {label!r} without arguments: {exc}") from None
    has_place, has_route = callable(getattr(obj, "place", None)), callable(getattr(obj, "route", None))
    if not (has_place or has_route):
        raise PolicyLoadError(f"policy {label!r} has neither place(instance, rng) nor route(request, view, rng)")
    return ComparePolicy(label, obj if has_place else default_placement(scenario),
                         obj if has_route else default_routing(scenario), "default", user=True)


@dataclass
class CompareResult:
    scenario: Scenario
    seeds: list[int]
    policies: list[ComparePolicy]
    results: list[dict]
    per_seed: list[dict]
    meta: dict
    runs: dict = field(default_factory=dict, repr=False)   # (label, seed) -> SimulationResult

    def to_json(self) -> str:
        return json.dumps(json_safe({"meta": self.meta, "results": self.results, "per_seed": self.per_seed}),
                          indent=1) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        for k, v in self.meta.items():
            buf.write(f"# {k}: {json.dumps(json_safe(v), sort_keys=True)}\n")
        w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        for row in self.results:
            w.writerow({k: row[k] for k in RESULT_COLUMNS})
        return buf.getvalue()

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        suffix = path.suffix.lower()
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".json":
            path.write_text(self.to_json())
        elif suffix == ".csv":
            path.write_text(self.to_csv())
        elif suffix == ".png":
            plot_compare(self, path)
        else:
            raise ValueError(f"output must end in .json, .csv or .png, got {str(path)!r}")
        return path


def compare(scenario: "str | Scenario | Mapping", policies: Sequence[Any], seeds: Sequence[int] = (0,),
            overrides: Sequence[str] = (), allocation_delays: Mapping[str, float] | None = None) -> CompareResult:
    """Simulate every policy on every seed and aggregate (means over seeds; std of the per-token
    time across seeds).  ``allocation_delays=None`` keeps the scenario's delays unless a user or
    learned policy takes part, in which case all delays are 0."""
    sc = load_scenario(scenario, overrides)
    seeds = [int(s) for s in seeds]
    resolved = [resolve_policy(p, sc) for p in policies]
    labels = [p.label for p in resolved]
    if len(set(labels)) != len(labels):
        raise PolicyLoadError(f"duplicate policies in {labels}")
    if allocation_delays is None:
        delays = {} if any(p.user for p in resolved) else dict(sc.simulator.allocation_delay_s)
        delay_rule = "equal (0): a user or learned policy takes part" if any(p.user for p in resolved) \
            else "the scenario's per-family delays"
    else:
        delays = dict(allocation_delays)
        delay_rule = "given by the caller"
    per_seed, results, runs = [], [], {}
    for pol in resolved:
        rows = []
        for seed in seeds:
            res: SimulationResult = simulate(sc, pol.placement, pol.routing, seed=seed, allocation_delays=delays)
            runs[(pol.label, seed)] = res
            s = res.summary
            delay = delays.get(pol.family, delays.get("default", 0.0))
            row = {"policy": pol.label, "seed": seed, "family": pol.family,
                   "mean_per_token_time_s": s["mean_per_token_time_s"], "ttft_p50_s": s["ttft_p50_s"],
                   "ttft_p95_s": s["ttft_p95_s"], "wait_mean_s": s["wait_mean_s"],
                   "algorithm_time_s": res.timings["placement_time_s"] + res.timings["routing_decision_mean_s"],
                   "num_rejected": s["num_rejected"], "allocation_delay_s": delay,
                   "placement": res.placement_name, "routing": res.routing_name,
                   "placement_diagnostics": _plain(res.placement_result.diagnostics)}
            rows.append(row)
        per_seed += rows
        mpt = np.array([r["mean_per_token_time_s"] for r in rows], dtype=float)
        results.append({
            "policy": pol.label, "family": pol.family,
            "mean_per_token_time_s": _nanmean(mpt),
            "mean_per_token_time_s_std": float(np.nanstd(mpt)) if len(mpt) > 1 else 0.0,
            "ttft_p50_s": _nanmean([r["ttft_p50_s"] for r in rows]),
            "ttft_p95_s": _nanmean([r["ttft_p95_s"] for r in rows]),
            "wait_mean_s": _nanmean([r["wait_mean_s"] for r in rows]),
            "algorithm_time_s": _nanmean([r["algorithm_time_s"] for r in rows]),
            "num_rejected": int(sum(r["num_rejected"] for r in rows)),
            "allocation_delay_s": rows[0]["allocation_delay_s"],
        })
    meta = {"version": __version__, "scenario": sc.name, "scenario_hash": sc.hash, "overrides": list(sc.overrides),
            "seeds": seeds, "allocation_delays": delays, "allocation_delay_rule": delay_rule,
            "reservation": sc.simulator.reservation, "backoff": sc.simulator.backoff,
            "derived_calibrations": sorted({c for r in runs.values() for c in r.meta["derived_calibrations"]}),
            "algorithm_time": "placement time + mean routing decision time (wall clock, s)"}
    if any(v > 0 for v in delays.values()):
        meta["allocation_delay_note"] = ALLOCATION_DELAY_NOTE
    return CompareResult(sc, seeds, resolved, results, per_seed, meta, runs)


def _nanmean(values) -> float:
    a = np.asarray(values, dtype=float)
    return float(np.nanmean(a)) if np.any(~np.isnan(a)) else math.nan


def _plain(d: Mapping) -> dict:
    out = {}
    for k, v in dict(d).items():
        v = json_safe(v)
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
    return out


def plot_compare(result: CompareResult, path: str | Path) -> None:
    """Bar chart of mean per-token time (± std over seeds) with a caption stating the provenance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["policy"] for r in result.results]
    means = [r["mean_per_token_time_s"] for r in result.results]
    stds = [r["mean_per_token_time_s_std"] for r in result.results]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(labels) + 2), 4.2))
    ax.bar(labels, means, yerr=stds, capsize=4, color="#4C72B0")
    ax.set_ylabel("mean per-token time (s)")
    ax.set_title(f"{result.meta['scenario']} — {len(result.seeds)} seed(s)")
    m = result.meta
    caption = (f"distllm-env {m['version']} · scenario {m['scenario']} ({m['scenario_hash']}) · seeds "
               f"{result.seeds[0]}…{result.seeds[-1]} · overrides {m['overrides'] or 'none'}\n"
               f"allocation delays: {m['allocation_delays'] or 'none'} ({m['allocation_delay_rule']})"
               + (f" · derived calibrations: {', '.join(m['derived_calibrations'])}" if m["derived_calibrations"] else ""))
    fig.text(0.01, 0.01, caption, fontsize=6.5, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["CompareResult", "ComparePolicy", "compare", "plot_compare", "resolve_policy"]

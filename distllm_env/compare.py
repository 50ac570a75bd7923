"""``compare()``: several policies on one scenario over paired seeds (docs/contracts.md §5–6).

A compare policy is a preset name (``petals``, ``proposed``, ``cg-bprr``, …), ``PLACEMENT+ROUTER``,
or ``module:Class``.  A ``module:Class`` (or an object passed from Python) provides ``place(instance,
rng)``, ``route(request, view, rng)`` or both; the missing decision takes the scenario's default.
Every policy sees the same instance and workload per seed (common random numbers).

Allocation delays (``allocation_delays=`` / ``--allocation-delays``, :func:`parse_allocation_delays`):
``auto`` (default) charges the scenario's per-family delays, except that a comparison including a
user's or learned policy — a ``module:Class``, an object, or a ``PLACEMENT+ROUTER`` pair with an
import path on either side — sets all delays equal (0); ``scenario`` always charges the scenario's,
``zero`` none, ``equal:SECONDS`` the same delay to every policy, learned ones included
(docs/contracts.md §4–§5).  Every output states the rule and the delays used; a ``default``-family
policy charged another delay than a preset (``auto`` / ``scenario``) adds
``meta["allocation_delays_unequal_note"]``.  An object passed from Python is family ``default``
(:func:`~distllm_env.allocation_delays.policy_family`) and labelled by :func:`object_label`.
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
from .allocation_delays import (ALLOCATION_DELAY_FORMS, AllocationDelayRule, parse_allocation_delays, policy_family,
                                registered_name, unequal_delays_note)
from .errors import PolicyLoadError
from .outputs import add_data_attribution, json_safe, sidecar_json, write_csv
from .parallel import map_seeds
from .imports import is_import_path, load_object
from .registry import (PLACEMENT_POLICIES, PRESETS, ROUTING_POLICIES, check_scenario_policies, default_placement,
                       default_routing, family_delay_s, make_placement, make_routing, split_policy_spec)
from .scenario import Scenario, load_scenario

RESULT_COLUMNS = ("policy", "family", "mean_per_token_time_s", "mean_per_token_time_s_std", "ttft_p50_s",
                  "ttft_p95_s", "wait_mean_s", "algorithm_time_s", "num_rejected", "allocation_delay_s", "status")

@dataclass(frozen=True)
class ComparePolicy:
    label: str
    placement: Any
    routing: Any
    family: str
    user: bool = False


def resolve_policy(spec: Any, scenario: Scenario, allow_imports: bool = False) -> ComparePolicy:
    """Turn a compare policy spec into (placement, routing, family); a :class:`ComparePolicy` is kept."""
    if isinstance(spec, ComparePolicy):
        return spec
    if not isinstance(spec, str):
        return _from_object(spec, object_label(spec), scenario, allow_imports)
    label, p, r = split_policy_spec(spec)
    if r == "":  # module:Class
        return _from_object(load_object(p, field="policies"), label, scenario, allow_imports)
    # resolved (options and place/route checked) now; simulate() builds fresh objects per seed
    make_placement(p, scenario, field=f"policy {label!r}")
    make_routing(r, scenario, field=f"policy {label!r}")
    # either side a user's import path: a user policy for the allocation-delay rule (docs/contracts.md §4)
    return ComparePolicy(label, p, r, policy_family(p, r), user=is_import_path(p) or is_import_path(r))


def object_label(obj: Any) -> str:
    """The label of a policy object (or class) passed from Python (docs/contracts.md §4): the ``name``
    its own class (or the instance itself) sets, else its class name; a registered policy's name only
    for an instance of exactly that registered class (:func:`~distllm_env.allocation_delays.registered_name`)
    — so ``class Mine(WSRRRouter)`` is ``Mine`` (family ``default``) and ``WSRRRouter()`` is ``ws-rr``."""
    cls = obj if isinstance(obj, type) else type(obj)
    own = None if isinstance(obj, type) else getattr(obj, "__dict__", {}).get("name")
    if own is None:
        own = cls.__dict__.get("name")
    if not isinstance(own, str) or not own:
        return cls.__name__
    if own in PRESETS or own in PLACEMENT_POLICIES or own in ROUTING_POLICIES:
        if own not in (registered_name(obj, "placement"), registered_name(obj, "routing")):
            return cls.__name__
    return own


def construct_policy(obj: Any, label: Any) -> Any:
    """A user's policy ``obj`` (a class or an instance) as an instance.  ``place``/``route`` are checked
    on the class *before* it is constructed, so an imported class that is not a policy never runs; a
    class is constructed without arguments.  ``label`` names the policy in errors.

    Raises:
        PolicyLoadError: ``obj`` has neither ``place(instance, rng)`` nor ``route(request, view, rng)``,
            or its class cannot be constructed without arguments."""
    if not (callable(getattr(obj, "place", None)) or callable(getattr(obj, "route", None))):
        raise PolicyLoadError(f"policy {label!r} has neither place(instance, rng) nor route(request, view, rng)")
    if isinstance(obj, type):
        try:
            obj = obj()
        except TypeError as exc:
            raise PolicyLoadError(f"cannot construct policy {label!r} without arguments: {exc}") from None
    return obj


def _from_object(obj: Any, label: str, scenario: Scenario, allow_imports: bool = False) -> ComparePolicy:
    obj = construct_policy(obj, label)
    has_place, has_route = callable(getattr(obj, "place", None)), callable(getattr(obj, "route", None))
    placement = obj if has_place else default_placement(scenario, allow_imports=allow_imports)
    routing = obj if has_route else default_routing(scenario, allow_imports=allow_imports)
    # family as simulate() charges it (contracts §4); user=True: ``auto`` then charges every policy alike
    return ComparePolicy(label, placement, routing, policy_family(placement, routing), user=True)


@dataclass
class CompareResult:
    scenario: Scenario
    seeds: list[int]
    policies: list[ComparePolicy]
    results: list[dict]
    per_seed: list[dict]
    meta: dict
    runs: dict = field(default_factory=dict, repr=False)   # (label, seed) -> SimulationResult
    failures: dict = field(default_factory=dict, repr=False)   # label -> PolicyFailure (keep_going)

    @property
    def ok_labels(self) -> list[str]:
        """Labels of the policies that ran on every seed (all but :attr:`failures`)."""
        return [p.label for p in self.policies if p.label not in self.failures]

    def to_json(self) -> str:
        return json.dumps(json_safe({"meta": self.meta, "results": self.results, "per_seed": self.per_seed}),
                          indent=1) + "\n"

    def to_csv(self) -> str:
        """The results table as plain CSV (:data:`RESULT_COLUMNS`; no comment lines: ``meta`` goes to
        the sidecar ``F.csv.json`` that :meth:`write` adds)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        for row in self.results:
            w.writerow({k: row[k] for k in RESULT_COLUMNS})
        return buf.getvalue()

    def write(self, path: str | Path) -> Path:
        """Write the results to ``path``: ``.json`` (meta, results, per_seed), ``.csv`` (a plain
    table; meta and per_seed in the sidecar ``F.csv.json``) or ``.png`` (paired per-seed differences).

        Raises:
            ValueError: ``path`` does not end in ``.json``, ``.csv`` or ``.png``.
            OSError: the file cannot be written."""
        path = Path(path)
        suffix = path.suffix.lower()
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".json":
            path.write_text(self.to_json())
        elif suffix == ".csv":
            write_csv(path, self.to_csv(), sidecar_json(self.meta, RESULT_COLUMNS, per_seed=self.per_seed))
        elif suffix == ".png":
            plot_compare(self, path)
        else:
            raise ValueError(f"output must end in .json, .csv or .png, got {str(path)!r}")
        return path


def compare(scenario: "str | Scenario | Mapping", policies: Sequence[Any], seeds: Sequence[int] = (0,),
            overrides: Sequence[str] = (), allocation_delays: Mapping[str, float] | None = None,
            allow_imports: bool = False, *, workers: int = 1, backend: str = "process",
            ray_address: str | None = None, keep_going: bool = False) -> CompareResult:
    """Simulate every policy on every seed and aggregate (means over seeds, ``num_rejected``
    included; std of the per-token time across seeds).  ``allocation_delays=None`` keeps the scenario's delays unless a user or
    learned policy takes part, in which case all delays are 0.  ``allow_imports=True`` lets the
    scenario's ``policy_defaults`` name import paths (README, "Trust boundary").  Every policy is
    resolved before anything runs.  ``workers`` / ``backend`` / ``ray_address``: the (policy, seed)
    runs in parallel (:func:`distllm_env.parallel.map_seeds`); the result is identical to the serial
    run's, wall-clock ``algorithm_time_s`` aside.  ``allocation_delays``: a rule ``auto`` (None),
    ``scenario``, ``zero``, ``equal:SECONDS`` or a ``{family: seconds}`` mapping
    (:func:`parse_allocation_delays`, docs/contracts.md §4).  ``keep_going=True``: a policy that fails on a
    seed (e.g. ``PlacementError``: PETALS on ``tiny``) gets a ``results`` row with NaN metrics and
    ``status`` ``failed: <Type>: <reason>`` (also in ``meta["failed_policies"]``) and the others still run;
    False (default): the exception propagates.

    Raises:
        ScenarioError: a bad scenario or override (:func:`distllm_env.load_scenario`), an import
            path in the scenario's ``policy_defaults`` without ``allow_imports``, or a bad policy
            option.
        PolicyLoadError: a policy spec that is not a preset, ``PLACEMENT+ROUTER`` or importable
            ``module:Class`` with ``place``/``route``, or two policies with the same label."""
    sc = load_scenario(scenario, overrides)
    check_scenario_policies(sc, allow_imports)
    seeds = [int(s) for s in seeds]
    resolved = [resolve_policy(p, sc, allow_imports) for p in policies]
    labels = [p.label for p in resolved]
    if len(set(labels)) != len(labels):
        raise PolicyLoadError(f"duplicate policies in {labels}")
    rule = parse_allocation_delays(allocation_delays, "allocation_delays")
    delays, delay_rule = rule.resolve(sc, any(p.user for p in resolved))
    per_seed, results, runs, failures = [], [], {}, {}
    tasks = [(sc, pol.placement, pol.routing, seed, delays, allow_imports, keep_going, pol.family) for pol in resolved
             for seed in seeds]
    sims = iter(map_seeds(_simulate_task, tasks, workers, backend, ray_address))
    for pol in resolved:
        rows = []
        outs = [next(sims) for _ in seeds]
        failed = next((o for o in outs if isinstance(o, PolicyFailure)), None)
        if failed is not None:       # keep_going: one row saying why, the other policies still run
            failures[pol.label] = failed
            results.append(_failed_row(pol, family_delay_s(delays, pol.family), failed))
            continue
        for seed, res in zip(seeds, outs):
            runs[(pol.label, seed)] = res
            s = res.summary
            delay = family_delay_s(delays, pol.family)
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
            # a mean over seeds like every other column (per seed: ``per_seed``; docs/contracts.md §6)
            "num_rejected": float(np.mean([r["num_rejected"] for r in rows])),
            "allocation_delay_s": rows[0]["allocation_delay_s"], "status": "ok",
        })
    meta = {"version": __version__, "scenario": sc.name, "scenario_hash": sc.hash, "overrides": list(sc.overrides),
            "seeds": seeds, "allocation_delays": delays, "allocation_delay_rule": delay_rule,
            "allocation_delays_mode": rule.spec,
            "allocation_delay_per_policy_s": {p.label: family_delay_s(delays, p.family) for p in resolved},
            "reservation": sc.simulator.reservation, "backoff": sc.simulator.backoff,
            "derived_calibrations": sorted({c for r in runs.values() for c in r.meta["derived_calibrations"]}),
            "algorithm_time": "placement time + mean routing decision time (wall clock, s)"}
    add_data_attribution(meta, sc)     # a built-in Azure trace: its CC-BY 4.0 attribution
    if any(v > 0 for v in delays.values()):
        meta["allocation_delay_note"] = ALLOCATION_DELAY_NOTE
    unequal = unequal_delays_note({p.label: p.family for p in resolved}, meta["allocation_delay_per_policy_s"],
                                  rule.mode)
    if unequal:
        meta["allocation_delays_unequal_note"] = unequal
    if failures:
        meta["failed_policies"] = {k: f.reason for k, f in failures.items()}
    return CompareResult(sc, seeds, resolved, results, per_seed, meta, runs, failures)


@dataclass(frozen=True)
class PolicyFailure:
    """Why a policy could not run on a seed (``compare(keep_going=True)``): ``reason`` is one line,
    ``seed ``N: Type: message``; ``error`` the exception (re-raised by ``evaluate`` for the evaluated
    policy itself)."""

    seed: int
    kind: str
    message: str
    error: Any = field(default=None, compare=False, repr=False)

    @property
    def reason(self) -> str:
        return f"seed {self.seed}: {self.kind}: {self.message}"

    def __reduce__(self):      # from a worker process: the exception object may not pickle, the text does
        return (PolicyFailure, (self.seed, self.kind, self.message, None))


def _failed_row(pol: ComparePolicy, delay_s: float, failure: PolicyFailure) -> dict:
    row: dict = {c: math.nan for c in RESULT_COLUMNS}
    row.update({"policy": pol.label, "family": pol.family, "allocation_delay_s": delay_s,
                "status": f"failed: {failure.reason}"})
    return row


def _simulate_task(task: tuple) -> SimulationResult:
    """One (policy, seed) run of :func:`compare`, in this or a worker process."""
    sc, placement, routing, seed, delays, allow_imports, keep_going, family = task
    kw = dict(seed=seed, allocation_delays=delays, allow_imports=allow_imports, allocation_delay_family=family)
    if not keep_going:
        return simulate(sc, placement, routing, **kw)
    try:
        return simulate(sc, placement, routing, **kw)
    except Exception as exc:     # keep_going: reported in the table, the other policies still run
        msg = " ".join(str(exc).split()) or repr(exc)
        return PolicyFailure(seed, type(exc).__name__, msg, exc)


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


def paired_differences(result: CompareResult, reference: str | None = None) -> list[dict]:
    """Per policy (the reference excluded), the paired per-seed relative differences of mean per-token
    time against ``reference`` (default: the first policy), ``d_s = T_policy,s / T_ref,s − 1``, with
    their mean and a 95 % confidence interval of the mean (Student t over the seeds, paired design;
    None with one seed or non-finite values).  Keys: ``policy``, ``diffs`` (one per seed, in
    ``result.seeds`` order), ``mean``, ``ci_low``, ``ci_high``, ``min``, ``max`` (all fractions)."""
    from scipy import stats

    ok = result.ok_labels             # a failed policy (keep_going) has no per-seed values
    ref = reference or (ok[0] if ok else result.policies[0].label)
    by = {(r["policy"], r["seed"]): r["mean_per_token_time_s"] for r in result.per_seed}
    base = np.array([by[(ref, s)] for s in result.seeds], dtype=float)
    out = []
    for pol in result.policies:
        if pol.label == ref or pol.label in result.failures:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.array([by[(pol.label, s)] for s in result.seeds], dtype=float) / base - 1.0
        finite = bool(np.all(np.isfinite(d)))
        mean = float(np.mean(d)) if finite else math.nan
        lo = hi = None
        if finite and len(d) > 1:
            half = float(stats.t.ppf(0.975, len(d) - 1) * np.std(d, ddof=1) / math.sqrt(len(d)))
            lo, hi = mean - half, mean + half
        out.append({"policy": pol.label, "diffs": d.tolist(), "mean": mean, "ci_low": lo, "ci_high": hi,
                    "min": float(np.min(d)) if finite else math.nan, "max": float(np.max(d)) if finite else math.nan})
    return out


def plot_compare(result: CompareResult, path: str | Path, reference: str | None = None) -> None:
    """Two panels, with a caption stating the provenance (the text table stays the primary output):

    * left: per policy, the paired per-seed relative difference of mean per-token time against the
      reference policy (default: the first), in %: one dot per seed, the mean, and its 95 % CI
      (:func:`paired_differences`); > 0 means slower than the reference;
    * right: mean per-token time per policy (s) with its min–max over seeds; the axis does not start
      at 0, so that differences of a few % stay visible."""
    import matplotlib.pyplot as plt

    fig = compare_figure(result, reference)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare_figure(result: CompareResult, reference: str | None = None):
    """The matplotlib figure :func:`plot_compare` saves (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ref = reference or (result.ok_labels or [result.policies[0].label])[0]
    diffs = paired_differences(result, ref)
    labels = [r["policy"] for r in result.results if r["policy"] not in result.failures]
    n = len(result.seeds)
    fig, (ax_d, ax_a) = plt.subplots(1, 2, figsize=(11, max(3.2, 0.45 * len(labels) + 2.2)),
                                     gridspec_kw={"width_ratios": [1.25, 1]})
    ys = np.arange(len(diffs))[::-1]
    for y, r in zip(ys, diffs):
        d = 100 * np.asarray(r["diffs"])
        ax_d.scatter(d, np.full(len(d), y) + (np.linspace(-0.12, 0.12, len(d)) if len(d) > 1 else 0.0), s=12, color="#8FA8C8",
                     label="per-seed difference" if y == ys[0] else None, zorder=2)
        if r["ci_low"] is not None:
            ax_d.errorbar(100 * r["mean"], y, xerr=[[100 * (r["mean"] - r["ci_low"])], [100 * (r["ci_high"] - r["mean"])]],
                          fmt="none", ecolor="#C44E52", capsize=5, lw=2, zorder=3,
                          label="95 % CI of the mean (paired t)" if y == ys[0] else None)
        ax_d.scatter([100 * r["mean"]], [y], marker="D", s=40, color="#C44E52", zorder=4,
                     label=(f"mean over {n} seeds" if n > 1 else "1 seed: no CI") if y == ys[0] else None)
        if math.isfinite(r["mean"]):   # above the row's jittered dots (y ± 0.12) and the mean marker
            ax_d.text(100 * r["mean"], y + 0.24, f"{100 * r['mean']:+.2f} %", ha="center", va="bottom", fontsize=8)
    ax_d.axvline(0.0, color="black", lw=1)
    ax_d.set_yticks(ys, [r["policy"] for r in diffs])
    ax_d.set_ylim(-0.8, max(len(diffs) - 0.2, 0.8))
    ax_d.set_xlabel(f"T / T({ref}) − 1 per seed, T = mean per-token time (%; > 0 = slower)")
    ax_d.set_title(f"difference to {ref}")
    if diffs:
        ax_d.legend(fontsize=7, loc="best")
    else:
        ax_d.text(0.5, 0.5, "one policy: nothing to compare", ha="center", transform=ax_d.transAxes)

    by: dict[str, list[float]] = {}
    for r in result.per_seed:
        by.setdefault(r["policy"], []).append(r["mean_per_token_time_s"])
    ya = np.arange(len(labels))[::-1]
    for y, lab in zip(ya, labels):
        v = np.asarray(by[lab], dtype=float)
        m = float(np.mean(v))
        ax_a.errorbar(m, y, xerr=[[m - np.min(v)], [np.max(v) - m]], fmt="o", color="#4C72B0", capsize=4,
                      label="mean; bar: min–max over seeds" if y == ya[0] else None)
    ax_a.set_yticks(ya, labels)
    ax_a.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    ax_a.ticklabel_format(axis="x", useOffset=False)
    ax_a.set_ylim(-0.8, len(labels) - 0.2)
    ax_a.set_xlabel("mean per-token time (s); axis not from 0")
    ax_a.set_title("absolute")
    ax_a.legend(fontsize=7, loc="best")

    m = result.meta
    fig.suptitle(f"{m['scenario']} — {n} paired seed(s); the text table is the primary output", fontsize=10)
    caption = (f"distllm-env {m['version']} · scenario {m['scenario']} ({m['scenario_hash']}) · seeds "
               f"{result.seeds[0]}…{result.seeds[-1]} · overrides {m['overrides'] or 'none'}\n"
               f"allocation delays: {m['allocation_delays'] or 'none'} — {m['allocation_delay_rule']}"
               + (f" · derived calibrations: {', '.join(m['derived_calibrations'])}" if m["derived_calibrations"] else ""))
    fig.text(0.01, 0.01, caption, fontsize=6.5, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


__all__ = ["ALLOCATION_DELAY_FORMS", "AllocationDelayRule", "CompareResult", "ComparePolicy", "PolicyFailure", "compare",
           "construct_policy", "object_label", "paired_differences", "parse_allocation_delays", "plot_compare", "resolve_policy"]

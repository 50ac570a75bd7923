"""Evaluate split policies on a scenario's split setting (``distllm-env split``; docs/split.md).

For one seed: draw ``split.num_requests`` requests (type, client, lengths) from the ``workload``
stream, build each request's profile and SLA, run every policy on every request, then feed each
policy's per-request server times to the FIFO server of :mod:`distllm_env.split.serving`.

Metrics per policy (W = server work of a plan, W_so = server-only work of the same request):

* ``server_work_reduction_mean`` — mean over requests of 1 − W/W_so;
* ``server_work_reduction_total`` — 1 − ΣW / ΣW_so (work-weighted);
* ``sla_violations`` — plans that are not a declared fallback yet miss their SLA (must be 0);
* ``infeasible_sla`` — requests for which the policy found no placement within the SLA and fell back
  to server-only;
* ``sustainable_rate_per_s`` — largest λ on the ×1.1 grid with mean wait < mean SLA and a stable
  server (λ·E[S] < 1; :func:`~distllm_env.split.serving.sustainable_rate`), and
  ``mean_wait_s`` / ``max_wait_s`` at the reference rate (server-only's sustainable rate, so every
  policy is judged at the same load);
* ``solve_time_mean_s`` / ``solve_time_max_s`` — wall-clock decision time per request.

DP's gain over a greedy policy G: 1 − ΣW_dp / ΣW_G (total) and the mean over requests of
1 − W_dp / W_G (requests where W_G = 0 count as 0 gain).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .._version import __version__
from ..rng import check_seed, generators, seed_streams
from ..scenario import Scenario, load_scenario
from .profile import SplitPlan, meets_sla
from .serving import sustainable_rate, unit_gaps, waits_at_rate
from .setting import SplitRequest, SplitSetting

DEFAULT_POLICIES = ("server-only", "prefix-greedy", "ratio-greedy", "dp")
GREEDY_POLICIES = ("prefix-greedy", "ratio-greedy")
#: the paper's headline numbers (arXiv 2410.10759 abstract) — printed for context only; its hardware,
#: bandwidths and sequence lengths are not public, so they are not a target.
PAPER_HEADLINE = {"server_work_reduction": 1 / 3, "dp_gain_over_greedy": 0.19}


@dataclass(eq=False)
class SplitEvaluation:
    """Result of :func:`evaluate_split`."""

    scenario: Scenario
    seed: int
    setting: SplitSetting
    requests: list[SplitRequest]
    sla_s: np.ndarray
    server_only_work: np.ndarray
    plans: dict[str, list[SplitPlan]]
    solve_time_s: dict[str, np.ndarray]
    rows: list[dict] = field(default_factory=list)
    gains: dict = field(default_factory=dict)
    families: list[dict] = field(default_factory=list)
    devices: list[dict] = field(default_factory=list)
    reference_rate_per_s: float = math.nan
    meta: dict = field(default_factory=dict)

    def work(self, policy: str) -> np.ndarray:
        return np.array([p.server_work_flops for p in self.plans[policy]])

    def to_json(self) -> dict:
        return {"meta": self.meta, "results": self.rows, "gains": self.gains, "families": self.families,
                "devices": self.devices, "setting": self.setting.describe()}


def _reduction_mean(work: np.ndarray, base: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(base > 0, 1.0 - work / np.where(base > 0, base, 1.0), 0.0)
    return float(r.mean()) if r.size else math.nan


def _total_reduction(work: np.ndarray, base: np.ndarray) -> float:
    tot = float(base.sum())
    return 1.0 - float(work.sum()) / tot if tot > 0 else 0.0


def evaluate_split(scenario: "str | Scenario", policies: Sequence[Any] = DEFAULT_POLICIES, seed: int = 0,
                   num_requests: int | None = None, overrides: Sequence[str] = ()) -> SplitEvaluation:
    """Run ``policies`` (names, ``module:Class`` paths or objects) on the split setting of
    ``scenario`` for ``seed`` (see the module docstring).  ``server-only`` is always evaluated (it is
    the baseline of the reductions and of the reference arrival rate).

    Raises:
        TypeError: the split policy returns something other than a :class:`SplitPlan`.
        ScenarioError: a bad seed, scenario or policy option."""
    from ..baselines.splitllm import SPLIT_POLICIES, make_split_policy

    seed = check_seed(seed)
    sc = load_scenario(scenario, overrides)
    setting = SplitSetting.from_scenario(sc, seed)
    # children 3 and 4 of the workload stream (0-2 are the geo workload's arrival/length/client streams)
    *_, req_rng, arr_rng = generators(seed_streams(seed)["workload"], 5)
    requests = setting.sample_requests(req_rng, num_requests)
    gaps = unit_gaps(arr_rng, len(requests))
    profiles = [setting.profile(r) for r in requests]
    slas = np.array([setting.sla_s(r, p) for r, p in zip(requests, profiles)])
    names, objs = [], []
    specs = list(policies)
    if "server-only" not in [s if isinstance(s, str) else getattr(s, "name", "") for s in specs]:
        specs.insert(0, "server-only")
    for spec in specs:
        opts = setting.policy_options() if isinstance(spec, str) and spec in SPLIT_POLICIES else {}
        if isinstance(spec, str):   # the scenario's policy_defaults.options.<name> (docs/contracts.md §3)
            opts |= dict(sc.policy_defaults.options.get(spec, {}))
        obj = make_split_policy(spec, **opts)
        name = spec if isinstance(spec, str) else str(getattr(obj, "name", type(obj).__name__))
        if name in names:
            continue
        names.append(name)
        objs.append(obj)
    plans: dict[str, list[SplitPlan]] = {}
    times: dict[str, np.ndarray] = {}
    for name, obj in zip(names, objs):
        out, dt = [], np.empty(len(requests))
        for i, (r, p, sla) in enumerate(zip(requests, profiles, slas)):
            t0 = time.perf_counter()
            plan = obj.split(r, p, float(sla))
            dt[i] = time.perf_counter() - t0
            if not isinstance(plan, SplitPlan):
                raise TypeError(f"split policy {name!r} returned {type(plan).__name__}, expected a SplitPlan")
            out.append(plan)
        plans[name] = out
        times[name] = dt
    base = np.array([p.total_work_flops for p in profiles])
    ev = SplitEvaluation(scenario=sc, seed=seed, setting=setting, requests=requests, sla_s=slas,
                         server_only_work=base, plans=plans, solve_time_s=times)
    mean_sla = float(slas.mean())
    spec = setting.spec
    service = {n: np.array([p.server_time_s for p in plans[n]]) for n in names}
    rates = {n: sustainable_rate(service[n], mean_sla, gaps, spec.arrival_base_per_s, spec.arrival_factor)
             for n in names}
    ref = rates["server-only"]
    ev.reference_rate_per_s = ref
    for n in names:
        w = ev.work(n)
        pl = plans[n]
        violations = sum(1 for p in pl if p.fallback is None and not meets_sla(p.latency_s, p.sla_s))
        waits = waits_at_rate(ref, gaps, service[n]) if math.isfinite(ref) and ref > 0 else np.zeros(len(pl))
        ev.rows.append({
            "policy": n,
            "mean_server_work_gflops": float(w.mean()) / 1e9,
            "server_work_reduction_mean": _reduction_mean(w, base),
            "server_work_reduction_total": _total_reduction(w, base),
            "mean_client_layers": float(np.mean([p.client_layers for p in pl])),
            "mean_switches": float(np.mean([p.switches for p in pl])),
            "mean_latency_over_sla": float(np.mean([p.latency_s / p.sla_s for p in pl])),
            "sla_violations": int(violations),
            "infeasible_sla": int(sum(1 for p in pl if p.fallback is not None)),
            "sustainable_rate_per_s": rates[n],
            "rate_gain_vs_server_only": (rates[n] / ref - 1.0) if math.isfinite(ref) and ref > 0 else math.nan,
            "mean_wait_s": float(waits.mean()),
            "max_wait_s": float(waits.max()) if waits.size else 0.0,
            "solve_time_mean_s": float(times[n].mean()),
            "solve_time_max_s": float(times[n].max()),
        })
    if "dp" in plans:
        wd = ev.work("dp")
        for g in GREEDY_POLICIES:
            if g in plans:
                wg = ev.work(g)
                ev.gains[f"dp_vs_{g}"] = {"total": _total_reduction(wd, wg), "mean": _reduction_mean(wd, wg),
                                          "requests_better": int(np.sum(wd < wg * (1 - 1e-9))),
                                          "requests_worse": int(np.sum(wd > wg * (1 + 1e-9)))}
    fam_of = np.array([setting.models[r.model].family for r in requests])
    dev_of = np.array([setting.clients[r.client].device.name for r in requests])
    groups = [("family", f, fam_of == f) for f in sorted(set(fam_of))]
    groups += [("device", d, dev_of == d) for d in dict.fromkeys(c.device.name for c in setting.clients)]
    for kind, f, m in groups:
        if not m.any():
            continue
        row = {kind: str(f), "requests": int(m.sum())}
        for n in names:
            if n != "server-only":
                row[f"reduction_{n}"] = _reduction_mean(ev.work(n)[m], base[m])
        if "dp" in plans:
            for g in GREEDY_POLICIES:
                if g in plans:
                    row[f"dp_gain_vs_{g}"] = _total_reduction(ev.work("dp")[m], ev.work(g)[m])
        (ev.families if kind == "family" else ev.devices).append(row)
    ev.meta = {
        "version": __version__, "scenario": sc.name, "scenario_hash": sc.hash, "overrides": list(sc.overrides),
        "seed": seed, "num_requests": len(requests), "policies": names, "mean_sla_s": mean_sla,
        "reference_rate_per_s": ref, "arrival_grid": {"base_per_s": spec.arrival_base_per_s,
                                                      "factor": spec.arrival_factor},
        "sla_rule": spec.sla_rule, "budget_steps": spec.budget_steps, "delta_s": spec.delta_s,
        "paper_headline_for_context": PAPER_HEADLINE,
        "note": ("FLOP-based cost model (docs/model.md §10.1 [R]); device efficiency 0.3 and the "
                 "server's efficiency are assumptions; the paper's hardware, bandwidths and lengths are not public, "
                 "so its headline numbers are context, not a target"),
    }
    return ev


__all__ = ["DEFAULT_POLICIES", "PAPER_HEADLINE", "SplitEvaluation", "evaluate_split"]

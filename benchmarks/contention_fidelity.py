"""Contention fidelity study (issue 11 item 8): the Table III grid under each server model, against
the paper's *experiment* column (arXiv 2512.21884 Table III, ``TABLE3_PUBLISHED_EXPERIMENT`` in
:mod:`distllm_env.reproduce`).

For each ``simulator.server_model`` (``independent``, ``serial``, ``batched``) with the allocation
delays set to 0 (and, as the baseline, ``independent`` with the fitted 250 s / 60 s delays = today's
``reproduce table3``), the grid client cluster 0/1/2 × λ ∈ {0.1, 0.5} × l ∈ {64, 128} × {PETALS,
proposed} is simulated under two readings of the arrivals:

* ``reproduce``: ``reproduce table3``'s reading (docs/contracts.md §4): Poisson(0.1) arrivals in both λ
  columns, CG-BP's |R| from the column's λ;
* ``column``: Poisson arrivals at the column's λ (what the testbed ran; the only reading in which the
  λ = 0.1 → 0.5 trend can come from load).

Nothing is fitted per cell.  Printed per cell: our mean per-token time (mean over seeds), the
experiment value and the relative error; then per (model, reading) the mean/max |error| and the
λ = 0.1 → 0.5 change of each (cluster, policy, l) row beside the experiment's (+0–8 %).

Usage: python benchmarks/contention_fidelity.py [--seeds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from distllm_env.compare import compare
from distllm_env.reproduce import LENGTHS, POLICIES, RATES, TABLE3_PUBLISHED_EXPERIMENT

#: (label, server model, allocation delays: None = the preset's fitted 250 s / 60 s)
CONFIGS = (("independent+fitted-delays", "independent", None),
           ("independent", "independent", {}),
           ("serial", "serial", {}),
           ("batched", "batched", {}))
READINGS = ("reproduce", "column")


def cell_overrides(cluster: int, lam: float, length: int, model: str, reading: str) -> list[str]:
    rate = 0.1 if reading == "reproduce" else lam
    return [f"clients.0.node=c{cluster}n0", f"workload.output_tokens={length}",
            f"policy_defaults.options.cg-bp.arrival_rate_per_s={lam}", f"workload.arrival_rate_per_s={rate}",
            f"simulator.server_model={model}"]


def run_grid(seeds: list[int], model: str, delays, reading: str) -> list[dict]:
    rows = []
    for cluster in (0, 1, 2):
        for lam in RATES:
            for length in LENGTHS:
                res = compare("paper-clustered", list(POLICIES), seeds,
                              cell_overrides(cluster, lam, length, model, reading), allocation_delays=delays)
                by = {r["policy"]: r for r in res.results}
                for pol in POLICIES:
                    exp = TABLE3_PUBLISHED_EXPERIMENT[(cluster, pol)][(lam, length)]
                    ours = by[pol]["mean_per_token_time_s"]
                    rows.append({"cluster": cluster, "lambda": lam, "l": length, "policy": pol, "ours_s": ours,
                                 "experiment_s": exp, "rel_error": (ours - exp) / exp,
                                 "wait_mean_s": float(np.mean([r["wait_mean_s"] for r in res.per_seed
                                                               if r["policy"] == pol and "wait_mean_s" in r]
                                                              or [np.nan]))})
    return rows


def trends(rows: list[dict]) -> list[dict]:
    """λ = 0.1 → 0.5 change of each (cluster, policy, l) row: ours and the experiment's."""
    idx = {(r["cluster"], r["policy"], r["l"], r["lambda"]): r for r in rows}
    out = []
    for cluster in (0, 1, 2):
        for pol in POLICIES:
            for length in LENGTHS:
                a, b = idx[(cluster, pol, length, 0.1)], idx[(cluster, pol, length, 0.5)]
                out.append({"cluster": cluster, "policy": pol, "l": length,
                            "ours_change": b["ours_s"] / a["ours_s"] - 1,
                            "experiment_change": b["experiment_s"] / a["experiment_s"] - 1})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per cell (default 5)")
    ap.add_argument("--models", default=",".join(c[0] for c in CONFIGS))
    ap.add_argument("--readings", default=",".join(READINGS))
    ap.add_argument("--json", default=None, help="also write every row to this JSON file")
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    wanted, readings = args.models.split(","), args.readings.split(",")
    results = {}
    for label, model, delays in CONFIGS:
        if label not in wanted:
            continue
        for reading in readings:
            t0 = time.perf_counter()
            rows = run_grid(seeds, model, delays, reading)
            tr = trends(rows)
            errs = np.abs([r["rel_error"] for r in rows])
            results[f"{label}/{reading}"] = {"rows": rows, "trends": tr}
            print(f"\n## {label}, arrivals: {reading} ({len(seeds)} seeds, {time.perf_counter() - t0:.0f} s)")
            print("cluster  λ    l    policy    ours_s   experiment_s  error    wait_mean_s")
            for r in rows:
                print(f"{r['cluster']:>7}  {r['lambda']:<4} {r['l']:<4} {r['policy']:<9} {r['ours_s']:8.3f}  "
                      f"{r['experiment_s']:12.2f}  {100 * r['rel_error']:+6.1f} %  {r['wait_mean_s']:9.1f}")
            print(f"mean |error| {100 * errs.mean():.1f} %, max {100 * errs.max():.1f} %, "
                  f"within 25 %: {(errs <= 0.25).sum()}/{len(errs)}")
            print("λ 0.1 → 0.5 change (ours vs experiment), per cluster/policy/l:")
            print("  " + "; ".join(f"c{t['cluster']} {t['policy'][:4]} l{t['l']}: {100 * t['ours_change']:+.0f} "
                                   f"vs {100 * t['experiment_change']:+.0f} %" for t in tr))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

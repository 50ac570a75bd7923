"""Churn (issue 12): policies under three churn levels, and the simulator's speed with churn on.

1. ``clustered-churn`` and ``petals-swarm-churn`` at three churn levels (each preset's Weibull
   uptimes and downtimes, mean uptime replaced by 3,600 / 1,200 / 300 s), PETALS (petals + petals)
   against CG-BP + WS-RR on paired seeds (same instance, workload and server up/down periods per seed).
   Reports per level and policy the mean over seeds of ``goodput_requests_per_s``,
   ``mean_per_token_time_s``, ``num_hit_by_failure``, ``mean_recovery_s`` and rejections, and the
   paired difference (CG-BP+WS-RR − PETALS) of goodput and per-token time with its standard error.
2. Speed: the generated 1,000-server scenario of benchmarks/dynamics_speed.py (``even`` placement,
   ``shortest`` routing) with and without churn (exponential uptimes, mean 3,600 s, downtime 600 s),
   under ``serial`` (both runs step every token: the like-for-like comparison) and ``independent``
   (without churn the analytic engine runs; with churn every token is stepped, served inline between
   control events by distllm_env/live/fastforward.py), for the given request
   counts (issue target: 100,000 requests, churn < 2 × no churn).

Usage: python benchmarks/churn.py [--seeds 10] [--presets clustered-churn,petals-swarm-churn]
       [--requests 100000] [--models serial,independent] [--mean-uptime-s 3600] [--skip-policies]
       [--skip-speed]

Wall-clock numbers depend on the machine and on what else runs on it (CPU time is printed too);
re-run before quoting them.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from distllm_env import load_scenario, simulate  # noqa: E402

from dynamics_speed import generated_scenario, serial_capacity_per_s  # noqa: E402

LEVELS = {"low": 3600.0, "medium": 1200.0, "high": 300.0}
POLICIES = {"petals": ("petals", "petals"), "cg-bp+ws-rr": ("cg-bp", "ws-rr")}
CHURN = {"distribution": "exponential", "mean_uptime_s": 3600.0, "mean_downtime_s": 600.0}


def bench_policies(preset: str, seeds: int) -> None:
    print(f"{preset}, {seeds} paired seeds (mean over seeds; diff = cg-bp+ws-rr − petals ± s.e.)")
    for level, up in LEVELS.items():
        rows: dict[str, list[dict]] = {p: [] for p in POLICIES}
        for seed in range(seeds):
            for name, (placement, routing) in POLICIES.items():
                res = simulate(preset, placement, routing, seed=seed,
                               overrides=[f"churn.mean_uptime_s={up}"])
                summary = dict(res.summary)
                if not summary["num_completed"]:         # nothing completed: no makespan, goodput 0
                    summary["goodput_requests_per_s"] = 0.0
                rows[name].append(summary)
        for name, summaries in rows.items():
            m = {k: float(np.nanmean([s[k] for s in summaries])) for k in (
                "goodput_requests_per_s", "mean_per_token_time_s", "num_hit_by_failure", "mean_recovery_s",
                "num_rejected")}
            print(f"  {level:>6} (uptime {up:>6.0f} s) {name:>12}: goodput {m['goodput_requests_per_s']:.4f} req/s, "
                  f"per-token {m['mean_per_token_time_s']:.4f} s, hit {m['num_hit_by_failure']:.1f}, "
                  f"recovery {m['mean_recovery_s']:.2f} s, rejected {m['num_rejected']:.1f}")
        for key in ("goodput_requests_per_s", "mean_per_token_time_s"):
            d = np.array([b[key] - a[key] for a, b in zip(rows["petals"], rows["cg-bp+ws-rr"])])
            d = d[np.isfinite(d)]                      # a seed where a policy completed nothing has no per-token time
            se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
            print(f"  {'':>6} {'diff':>27}: {key} {float(d.mean()):+.4f} ± {se:.4f} ({len(d)} seeds)")


def bench_speed(num_requests: list[int], models: list[str], mean_uptime_s: float) -> None:
    churn = {**CHURN, "mean_uptime_s": mean_uptime_s}
    for model in models:
        probe = load_scenario(generated_scenario(10, 1.0, "serial"))
        serial_cap, memory_cap = serial_capacity_per_s(probe)
        rate = 0.5 * min(serial_cap, memory_cap)
        print(f"generated 1,000-server scenario, {model}, λ = {rate:.4f}/s, churn: exponential uptimes "
              f"mean {mean_uptime_s:g} s, downtimes {CHURN['mean_downtime_s']:g} s")
        for n in num_requests:
            base = generated_scenario(n, rate, model)
            times = {}
            for label, spec in (("no churn", base), ("churn", {**base, "churn": churn})):
                t0, c0 = time.perf_counter(), time.process_time()
                res = simulate(load_scenario(spec), "even", "shortest", seed=0)
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                times[label] = cpu
                s = res.summary
                print(f"  {n:>7,} requests, {label:>8}: {dt:8.2f} s wall, {cpu:8.2f} s CPU; engine "
                      f"{res.meta['engine']}, completed {s['num_completed']}, hit {s['num_hit_by_failure']}, "
                      f"server events {len(getattr(res, 'server_events', []))}", flush=True)
            print(f"  {n:>7,} requests: churn / no churn = {times['churn'] / times['no churn']:.2f} (CPU)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--presets", default="clustered-churn,petals-swarm-churn")
    ap.add_argument("--requests", default="100000")
    ap.add_argument("--models", default="serial,independent")
    ap.add_argument("--mean-uptime-s", type=float, default=CHURN["mean_uptime_s"])
    ap.add_argument("--skip-policies", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    if not args.skip_policies:
        for preset in args.presets.split(","):
            bench_policies(preset, args.seeds)
    if not args.skip_speed:
        bench_speed([int(x) for x in args.requests.split(",")], args.models.split(","), args.mean_uptime_s)


if __name__ == "__main__":
    main()

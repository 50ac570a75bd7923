"""Benchmark of the SplitLLM DP (docs/split.md): solve time for 48 layers and a 1,000-step budget (target
≤ 5 ms), and — with ``--scenarios`` — the headline numbers on the shipped ``splitllm-*`` presets.

    python benchmarks/split_dp.py                 # DP timing only
    python benchmarks/split_dp.py --scenarios     # + reductions, gains, rates on every splitllm-* preset

Timings are wall-clock medians on this machine (noisy when other processes share the cores).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from distllm_env.baselines.splitllm import PrefixGreedySplit, RatioGreedySplit, dp_tables, solve_dp
from distllm_env.scenario import list_presets
from distllm_env.split.evaluate import PAPER_HEADLINE, evaluate_split
from distllm_env.split.models import LAYER_MODELS
from distllm_env.split.profile import LayerProfile, NetworkLink, SplitServer, layer_profile


def _median_ms(fn, repeats: int) -> float:
    fn()   # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def synthetic_profile(L: int, seed: int = 0) -> LayerProfile:
    rng = np.random.default_rng(seed)
    ts = rng.uniform(0.001, 0.01, L)
    return LayerProfile(client_time_s=ts * rng.uniform(2, 20, L), server_time_s=ts, server_work_flops=rng.uniform(1, 2, L),
                        up_s=rng.uniform(0.001, 0.05, L + 1), down_s=rng.uniform(0.001, 0.05, L + 1))


def timing(repeats: int) -> None:
    p48 = synthetic_profile(48)
    sla = 1.5 * p48.latency_s(np.zeros(48, np.int8))
    print("DP solve time (median of %d runs), budget J = 1000 steps (δ = SLA/1000):" % repeats)
    print(f"  synthetic profile, 48 layers:           solve_dp {_median_ms(lambda: solve_dp(p48, sla), repeats):.3f} ms"
          f"   (tables only {_median_ms(lambda: dp_tables(p48, sla), repeats):.3f} ms; target ≤ 5 ms)")
    net = NetworkLink(48.36e6, 93.99e6, 0.028)
    pxl = layer_profile(LAYER_MODELS["gpt2-xl"], 8.73e12, SplitServer("A100", 93.6e12), 256, net, output_tokens=16)
    sla_xl = 1.5 * pxl.latency_s(np.zeros(pxl.num_layers, np.int8))
    print(f"  gpt2-xl profile ({pxl.num_layers} layers, n=256, 16 tokens): solve_dp "
          f"{_median_ms(lambda: solve_dp(pxl, sla_xl), repeats):.3f} ms")
    for steps in (100, 10_000):
        print(f"  synthetic 48 layers, J = {steps:>6}:      solve_dp "
              f"{_median_ms(lambda: solve_dp(p48, sla, budget_steps=steps), max(3, repeats // 5)):.3f} ms")
    pg, rg = PrefixGreedySplit(), RatioGreedySplit()
    print(f"  prefix-greedy 48 layers: {_median_ms(lambda: pg.split(None, p48, sla), repeats):.3f} ms; "
          f"ratio-greedy 48 layers: {_median_ms(lambda: rg.split(None, p48, sla), repeats):.3f} ms")


def scenarios(seeds: int, requests: int | None) -> None:
    names = [n for n in list_presets() if n.startswith("splitllm-")]
    print()
    print(f"shipped splitllm-* presets, seeds 0..{seeds - 1}, "
          f"{'the scenario' if requests is None else requests}'s requests per seed")
    print(f"paper headline (context only): reduction {100 * PAPER_HEADLINE['server_work_reduction']:.0f} %, "
          f"DP over greedy {100 * PAPER_HEADLINE['dp_gain_over_greedy']:.0f} %")
    for name in names:
        acc: dict[str, list[float]] = {}
        for seed in range(seeds):
            ev = evaluate_split(name, seed=seed, num_requests=requests)
            rows = {r["policy"]: r for r in ev.rows}
            for pol, r in rows.items():
                acc.setdefault(f"{pol} reduction mean", []).append(r["server_work_reduction_mean"])
                acc.setdefault(f"{pol} reduction total", []).append(r["server_work_reduction_total"])
                acc.setdefault(f"{pol} rate gain", []).append(r["rate_gain_vs_server_only"])
                acc.setdefault(f"{pol} sla violations", []).append(r["sla_violations"])
                acc.setdefault(f"{pol} solve ms", []).append(1e3 * r["solve_time_mean_s"])
            for key, g in ev.gains.items():
                acc.setdefault(f"{key} total", []).append(g["total"])
                acc.setdefault(f"{key} mean", []).append(g["mean"])
        print(f"\n{name}:")
        for key, vals in acc.items():
            v = np.asarray(vals, dtype=float)
            if "violations" in key:
                print(f"  {key:<36} {int(v.sum())}")
            elif "ms" in key:
                print(f"  {key:<36} {v.mean():.3f}")
            else:
                print(f"  {key:<36} {100 * v.mean():7.1f} %  (seed std {100 * v.std():.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--scenarios", action="store_true", help="also evaluate every splitllm-* preset")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=None, help="requests per seed (default: the scenario's)")
    args = ap.parse_args()
    timing(args.repeats)
    if args.scenarios:
        scenarios(args.seeds, args.requests)


if __name__ == "__main__":
    main()

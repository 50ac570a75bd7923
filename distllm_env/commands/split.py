"""``distllm-env split``: evaluate split policies on a scenario's SplitLLM setting (docs/split.md).

Prints, per policy, the server-work reduction vs server-only, SLA violations, infeasible SLAs, the
sustainable arrival rate of the shared FIFO server and the waits at a common reference rate; then
DP's gain over each greedy policy, per-family and per-device breakdowns, and the paper's headline
numbers for context only.  ``--geo`` also runs the geo-distributed simulator with and without the
client-prefix splitter.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from ..errors import ScenarioError
from ..split.evaluate import DEFAULT_POLICIES, PAPER_HEADLINE, evaluate_split
from ..registry import check_scenario_policies
from .common import (add_format_arg, add_scenario_args, add_seed_arg, check_out_path, check_seed, format_table, print_json,
                     scenario_from)

TABLE_COLUMNS = ("policy", "mean_server_work_gflops", "server_work_reduction_mean", "server_work_reduction_total",
                 "sla_violations", "infeasible_sla", "mean_client_layers", "mean_switches",
                 "sustainable_rate_per_s", "rate_gain_vs_server_only", "mean_wait_s", "max_wait_s",
                 "solve_time_mean_s")


def register(sub) -> None:
    p = sub.add_parser("split", help="evaluate client/server split policies (SplitLLM) on a scenario",
                       description="Evaluate SplitLLM split policies on the 'split:' section of a scenario: "
                                   "server-work reduction, DP-vs-greedy gain, SLA violations, serving capacity.")
    add_scenario_args(p)
    add_seed_arg(p)
    p.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                   help="comma-separated split policies (names or module:Class; default %(default)s)")
    p.add_argument("--requests", type=int, default=None,
                   help="number of requests (default: the scenario's split.num_requests)")
    p.add_argument("--geo", action="store_true",
                   help="also simulate the geo scenario with and without the client-prefix splitter")
    p.add_argument("--geo-routing", default=None, help="routing policy for --geo (default: the scenario's)")
    p.add_argument("--out", default=None, help="write the full result as JSON to FILE (missing parent folders are created)")
    add_format_arg(p)
    p.set_defaults(func=run)


def _pct(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{100 * x:.1f} %"


def _geo(args, scenario_name: str) -> dict:
    from ..api import simulate
    from ..split.geo import GeoSplitter
    from ..split.models import layer_model_from_spec

    out = {}
    for label, splitter in (("no split", None), ("dp prefix split", GeoSplitter("dp"))):
        res = simulate(scenario_name, None, args.geo_routing, seed=args.seed, overrides=args.overrides,
                       allow_imports=args.allow_import,
                       splitter=splitter)
        lm = layer_model_from_spec(res.instance.model)
        saved = total = 0.0
        for r in res.records:
            block = float(lm.layer_costs(r.prompt_tokens, r.output_tokens).flops[0])
            saved += r.client_blocks * block
            total += lm.num_blocks * block
        s = res.summary
        out[label] = {"routing": res.routing_name, "mean_per_token_time_s": s["mean_per_token_time_s"],
                      "ttft_p50_s": s["ttft_p50_s"], "num_rejected": s["num_rejected"],
                      "mean_client_blocks": float(np.mean([r.client_blocks for r in res.records])),
                      "server_block_work_reduction": saved / total if total else 0.0}
    return out


def run(args: argparse.Namespace) -> int:
    """``distllm-env split``; returns the exit code.

    Raises:
        ScenarioError: no policies, ``--requests`` < 1, an ``--out`` that is not .json, or a bad
            scenario / option (the CLI prints one line and exits 2)."""
    seed = check_seed(args.seed)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if not policies:
        raise ScenarioError("--policies", "expected at least one split policy")
    if args.requests is not None and args.requests < 1:
        raise ScenarioError("--requests", f"expected N ≥ 1, got {args.requests}")
    if args.out is not None and not args.out.lower().endswith(".json"):
        raise ScenarioError("--out", f"expected a .json file, got {args.out!r}")
    if args.out is not None:
        check_out_path(args.out)
    check_scenario_policies(scenario_from(args), args.allow_import)
    ev = evaluate_split(args.scenario, policies, seed=seed, num_requests=args.requests, overrides=args.overrides)
    result = ev.to_json()
    if args.geo:
        result["geo"] = _geo(args, args.scenario)
    if args.out:
        import json

        from ..outputs import json_safe

        with open(args.out, "w") as fh:
            json.dump(json_safe(result), fh, indent=1)
    if args.format == "json":
        print_json(result)
        return 0
    m, st = ev.meta, ev.setting
    sla = (f"{st.spec.sla_factor:g} × server-only latency" if st.spec.sla_rule == "server_only_factor"
           else f"fixed {st.spec.sla_fixed_s * 1e3:g} ms")
    delta = (f"SLA/{st.spec.budget_steps}" if st.spec.delta_s is None else f"{st.spec.delta_s * 1e3:g} ms")
    print(f"scenario {m['scenario']} (hash {m['scenario_hash']}), seed {seed}, {m['num_requests']} requests; "
          f"SLA {sla} (mean {m['mean_sla_s'] * 1e3:.1f} ms); δ = {delta}")
    print(f"server {st.server.name}: {st.server.effective_flops / 1e12:.1f} TFLOP/s effective")
    for c in st.clients:
        n = c.network
        print(f"client {c.index}: {c.device.name} {c.device.effective_flops / 1e12:.2f} TFLOP/s effective, "
              f"up {n.uplink_bits_per_s / 1e6:g} / down {n.downlink_bits_per_s / 1e6:g} Mbit/s, "
              f"RTT {n.rtt_s * 1e3:g} ms")
    print()
    print(format_table(ev.rows, TABLE_COLUMNS))
    print(f"(waits at the reference rate {ev.reference_rate_per_s:.4g}/s = server-only's sustainable rate; "
          f"sustainable = largest λ on a ×{st.spec.arrival_factor:g} grid with mean wait < mean SLA and λ·E[S] < 1)")
    print()
    for key, g in ev.gains.items():
        print(f"{key.replace('_', ' ')}: DP saves {_pct(g['total'])} of the greedy's server work "
              f"(mean per request {_pct(g['mean'])}; DP better on {g['requests_better']}, "
              f"worse on {g['requests_worse']} requests)")
    if ev.families:
        print()
        print(format_table(ev.families))
    if ev.devices:
        print()
        print(format_table(ev.devices))
    dp = next((r for r in ev.rows if r["policy"] == "dp"), None)
    print()
    greedy = [g["total"] for g in ev.gains.values()]
    print("paper (arXiv 2410.10759 abstract), for context only — its hardware, bandwidths and lengths are not "
          "public:")
    print(f"  server-work reduction vs server-only ≈ {_pct(PAPER_HEADLINE['server_work_reduction'])}"
          + (f"   | here (dp): mean {_pct(dp['server_work_reduction_mean'])}, total "
             f"{_pct(dp['server_work_reduction_total'])}" if dp else ""))
    here = ", ".join(f"{k[len('dp_vs_'):]} {_pct(v)}" for k, v in zip(ev.gains, greedy))
    print(f"  DP over greedy ≈ {_pct(PAPER_HEADLINE['dp_gain_over_greedy'])}" + (f"   | here: {here}" if greedy else ""))
    viol = sum(r["sla_violations"] for r in ev.rows)
    print(f"SLA violations (plans that are not a declared fallback yet miss their SLA): {viol}")
    if "geo" in result:
        print()
        rows = [{"geo run": k, **v} for k, v in result["geo"].items()]
        print(format_table(rows))
    if args.out:
        print(f"full result written to {args.out}")
    return 0

"""``distllm-env simulate``: one scenario, one seed, one placement + routing policy."""

from __future__ import annotations

import argparse

from ..api import simulate
from ..outputs import write_requests
from .common import add_format_arg, add_scenario_args, add_seed_arg, check_seed, format_kv, print_json

SUMMARY_KEYS = ("num_requests", "num_completed", "num_rejected", "mean_per_token_time_s", "ttft_p50_s", "ttft_p95_s",
                "ttft_p99_s", "wait_mean_s", "wait_max_s", "mean_hops", "throughput_tokens_per_s",
                "max_concurrent_sessions", "allocation_delay_s")


def register(sub) -> None:
    p = sub.add_parser("simulate", help="simulate one scenario with a placement and a routing policy",
                       description="Simulate one scenario and print a summary table.")
    add_scenario_args(p)
    p.add_argument("--placement", default=None,
                   help="placement policy name or module:Class (default: the scenario's, else cg-bp)")
    p.add_argument("--routing", default=None,
                   help="routing policy name or module:Class (default: the scenario's, else ws-rr)")
    add_seed_arg(p)
    p.add_argument("--out", default=None, help="write the per-request table to FILE (.csv or .json)")
    add_format_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.out is not None and not args.out.lower().endswith((".csv", ".json")):
        from ..errors import ScenarioError

        raise ScenarioError("--out", f"expected a .csv or .json file, got {args.out!r}")
    res = simulate(args.scenario, args.placement, args.routing, seed=check_seed(args.seed), overrides=args.overrides)
    if args.out:
        write_requests(args.out, res.records, res.meta)
    s = res.summary
    if args.format == "json":
        print_json({"meta": res.meta, "summary": s, "timings": res.timings})
        return 0
    m = res.meta
    print(f"scenario {m['scenario']} (hash {m['scenario_hash']}), seed {m['seed']}, placement {m['placement']}, "
          f"routing {m['routing']} (family {m['family']}), reservation {m['reservation']}, "
          f"backoff {'on' if m['backoff'] else 'off'}")
    print(f"placement: {res.placement_result.placement.describe()}  [cache {m['cache_policy']}]")
    print(format_kv([(k, s[k]) for k in SUMMARY_KEYS]))
    print(format_kv([("placement_time_s", res.timings["placement_time_s"]),
                     ("routing_decision_median_s", res.timings["routing_decision_median_s"])]))
    if m.get("allocation_delay_note"):
        print(f"note: {m['allocation_delay_note']}: {m['allocation_delays_s']}")
    if m["derived_calibrations"]:
        print(f"note: derived calibrations used: {', '.join(m['derived_calibrations'])}")
    if s["num_rejected"]:
        print(f"note: {s['num_rejected']} request(s) rejected: {s['rejected_reasons']}")
    if args.out:
        print(f"per-request table written to {args.out}")
    return 0

"""``distllm-env simulate``: one scenario, one seed, one placement + routing policy."""

from __future__ import annotations

import argparse

from ..api import simulate
from ..live.admission import admission_label
from ..outputs import write_requests
from ..registry import check_scenario_policies, make_placement, make_routing
from .common import add_format_arg, add_scenario_args, add_seed_arg, check_out_path, check_seed, format_kv, print_json, scenario_from

SUMMARY_KEYS = ("num_requests", "num_completed", "num_rejected", "mean_per_token_time_s", "ttft_p50_s", "ttft_p95_s",
                "ttft_p99_s", "wait_mean_s", "wait_max_s", "mean_hops", "throughput_tokens_per_s",
                "max_concurrent_sessions", "allocation_delay_s")
#: printed only when ``num_truncated`` > 0 (``workload.over_length: truncate``, or outputs cut at the
#: declared ``max_length`` under unknown lengths)
TRUNCATION_KEYS = ("num_truncated",)
#: printed only when the scenario has a ``churn:`` section (docs/model.md §12)
CHURN_KEYS = ("goodput_requests_per_s", "num_hit_by_failure", "mean_recovery_s")


def summary_keys(summary: dict, churn: bool) -> list[str]:
    """The summary keys the ``simulate`` table prints: :data:`SUMMARY_KEYS`, then ``num_truncated`` when
    it is non-zero and :data:`CHURN_KEYS` when churn is on (so a ``paper-*`` table is unchanged)."""
    keys = list(SUMMARY_KEYS)
    if summary.get("num_truncated", 0):
        keys.insert(keys.index("num_rejected") + 1, "num_truncated")
    if churn:
        keys += [k for k in CHURN_KEYS if k in summary]
    return keys


def register(sub) -> None:
    p = sub.add_parser("simulate", help="simulate one scenario with a placement and a routing policy",
                       description="Simulate one scenario and print a summary table.")
    add_scenario_args(p)
    p.add_argument("--placement", default=None,
                   help="placement policy name or module:Class (default: the scenario's, else cg-bp)")
    p.add_argument("--routing", default=None,
                   help="routing policy name or module:Class (default: the scenario's, else ws-rr)")
    add_seed_arg(p)
    p.add_argument("--out", default=None, help="write the per-request table to FILE (.csv: a plain table plus the "
                                                "sidecar FILE.json with meta and summary; or .json); missing parent folders are created")
    p.add_argument("--plot", default=None, metavar="F.png",
                   help="draw the run's dynamics over time (arrivals, waiting requests, per-token times, KV "
                        "utilisation and active sessions per server) to F.png (.png/.pdf/.svg)")
    add_format_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``distllm-env simulate``; returns the exit code.

    Raises:
        ScenarioError: an ``--out`` that is not .csv/.json or not writable, a ``--plot`` that is not
            .png/.pdf/.svg or not writable (both checked before the run), a bad seed, scenario or
            override (the CLI prints one line and exits 2).
        PolicyLoadError: ``--placement`` / ``--routing`` cannot be resolved."""
    if args.out is not None and not args.out.lower().endswith((".csv", ".json")):
        from ..errors import ScenarioError

        raise ScenarioError("--out", f"expected a .csv or .json file, got {args.out!r}")
    if args.out is not None:
        check_out_path(args.out, sidecar=args.out.lower().endswith(".csv"))
    plot_path = getattr(args, "plot", None)
    if plot_path is not None:
        if not plot_path.lower().endswith((".png", ".pdf", ".svg")):
            from ..errors import ScenarioError

            raise ScenarioError("--plot", f"expected a .png, .pdf or .svg file, got {plot_path!r}")
        check_out_path(plot_path, field="--plot")
    seed = check_seed(args.seed)
    sc = scenario_from(args)
    check_scenario_policies(sc, args.allow_import)
    # resolved here so that errors name the flag (e.g. "--placement: os:getcwd has no place(...) method")
    placement = None if args.placement is None else make_placement(args.placement, sc, field="--placement")
    routing = None if args.routing is None else make_routing(args.routing, sc, field="--routing")
    res = simulate(sc, placement, routing, seed=seed, allow_imports=args.allow_import)
    if args.out:
        write_requests(args.out, res.records, res.meta, res.summary)
    if plot_path is not None:
        res.plot(plot_path)
    s = res.summary
    if args.format == "json":
        print_json({"meta": res.meta, "summary": s, "timings": res.timings,
                    "placement_notes": [str(n) for n in res.placement_result.diagnostics.get("notes", ())]})
        return 0
    m = res.meta
    print(f"scenario {m['scenario']} (hash {m['scenario_hash']}), seed {m['seed']}, placement {m['placement']}, "
          f"routing {m['routing']} (family {m['family']}), {admission_label(m)}, "
          f"backoff {'on' if m['backoff'] else 'off'}")
    print(f"placement: {res.placement_result.placement.describe()}  [cache {m['cache_policy']}]")
    print(format_kv([(k, s[k]) for k in summary_keys(s, getattr(sc, "churn", None) is not None)]))
    print(format_kv([("placement_time_s", res.timings["placement_time_s"]),
                     ("routing_decision_median_s", res.timings["routing_decision_median_s"])]))
    for note in res.placement_result.diagnostics.get("notes", ()):   # e.g. the MILP's time-limit note
        print(f"note: placement: {note}")
    if m.get("allocation_delay_note"):
        print(f"note: {m['allocation_delay_note']}: {m['allocation_delays_s']}")
    if m["derived_calibrations"]:
        print(f"note: derived calibrations used: {', '.join(m['derived_calibrations'])}")
    if s["num_rejected"]:
        print(f"note: {s['num_rejected']} request(s) rejected: {s['rejected_reasons']}")
    if s.get("num_truncated"):
        print(f"note: {s['num_truncated']} request(s) truncated: output cut at the model's maximum sequence "
              f"(workload.over_length: truncate) or at the declared max_length (unknown lengths)")
    if m.get("data_attribution"):
        print(f"note: data: {m['data_attribution']}")
    if args.out:
        print(f"per-request table written to {args.out}")
    if plot_path is not None:
        print(f"timeline plot written to {plot_path}")
    return 0

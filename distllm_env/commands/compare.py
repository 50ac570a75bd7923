"""``distllm-env compare``: several policies on one scenario over paired seeds."""

from __future__ import annotations

import argparse
import sys

from ..compare import ALLOCATION_DELAY_FORMS, RESULT_COLUMNS, compare, parse_allocation_delays
from ..errors import PlacementError, PolicyLoadError, ScenarioError
from ..parallel import add_parallel_args, parallel_from
from .common import (add_format_arg, add_results_out_arg, add_scenario_args, add_seeds_args, check_results_out,
                     format_table, print_json, seeds_from)


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare policies on one scenario over several seeds",
                       description="Compare policies (presets, PLACEMENT+ROUTER, or module:Class) on paired seeds.")
    add_scenario_args(p)
    p.add_argument("--policies", required=True,
                   help="comma-separated: presets (petals, proposed, proposed-load, cg-bprr, opt-order, opt-number, opt-rr, milp), "
                        "PLACEMENT+ROUTER (e.g. even+shortest) or module:Class")
    add_seeds_args(p)
    add_allocation_delays_arg(p)
    p.add_argument("--keep-going", action="store_true",
                   help="a policy that cannot run on the scenario (e.g. petals on tiny) is reported as failed in "
                        "the table and outputs, and the others still run; exit 0 if at least one policy ran, 2 if "
                        "none did (default: stop with its error, exit 2)")
    add_results_out_arg(p, ".json (meta, results, per_seed), .csv (results as a plain table; meta and per_seed in "
                           "the sidecar F.csv.json) or .png (paired per-seed differences against the first policy)")
    add_parallel_args(p)
    add_format_arg(p)
    p.set_defaults(func=run)


def add_allocation_delays_arg(p: argparse.ArgumentParser) -> None:
    """``--allocation-delays auto|scenario|zero|equal:SECONDS`` (shared by ``compare`` and ``evaluate``;
    parsed by :func:`distllm_env.compare.parse_allocation_delays`, docs/contracts.md §4)."""
    p.add_argument("--allocation-delays", default="auto", metavar="RULE",
                   help=f"{ALLOCATION_DELAY_FORMS}. auto (default): the scenario's per-family delays "
                        "unless a user/learned policy takes part (then 0 for all); a registered pair that is no preset "
                        "(e.g. cg-bp+petals) is family default and pays 0 where the paper presets pay 60/250 s on "
                        "paper-*, so auto is not like for like then (a note says so); scenario: always the scenario's "
                        "per-family delays (a learned or user policy is family default); zero: none; equal:S: S seconds "
                        "per request for every policy, learned ones included")


def short_status(rows: list[dict]) -> list[dict]:
    """Table rows with a failed row's ``status`` shortened to ``failed (reason below)`` (the reason is
    printed under the table, and written in full to the JSON/CSV outputs)."""
    return [r | {"status": "failed (reason below)"} if str(r.get("status", "ok")).startswith("failed") else r
            for r in rows]


def delays_line(meta: dict) -> str:
    """The footer line stating the allocation-delay rule and the delays used (``compare``, ``evaluate``)."""
    head = f"allocation delays ({meta['allocation_delays_mode']}): "
    if not meta["allocation_delays"] and meta["allocation_delays_mode"] == "zero":
        return head + meta["allocation_delay_rule"]
    return head + f"{meta['allocation_delays'] or 'none'} — {meta['allocation_delay_rule']}"


def run(args: argparse.Namespace) -> int:
    """``distllm-env compare``; returns the exit code: 0, or 2 when ``--keep-going`` is given and no
    policy ran (every one failed; the table and the reasons are still printed).

    Raises:
        ScenarioError: no policies, a bad ``--out``, seed, scenario or override (the CLI prints one line
            and exits 2).
        PolicyLoadError: a policy spec that cannot be resolved."""
    check_results_out(args.out)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if not policies:
        raise ScenarioError("--policies", "expected at least one policy")
    delays = parse_allocation_delays(args.allocation_delays)
    try:
        res = compare(args.scenario, policies, seeds_from(args), args.overrides, allocation_delays=delays,
                      allow_imports=args.allow_import, keep_going=args.keep_going, **parallel_from(args))
    except PolicyLoadError as exc:      # every policy is resolved before anything runs: name the flag
        msg = str(exc)
        raise PolicyLoadError(msg if msg.startswith("--policies") else f"--policies: {msg}") from None
    except PlacementError as exc:       # without --keep-going: one line, and how to run the others anyway
        raise PlacementError(f"{exc} (--keep-going reports it and runs the rest)", exc.uncovered) from None
    for out in args.out:
        res.write(out)
    rc = 0 if res.ok_labels else 2      # --keep-going: a partial failure is reported and exits 0
    if args.format == "json":
        print_json({"meta": res.meta, "results": res.results, "per_seed": res.per_seed})
        if rc:
            print("distllm-env: error: --policies: no policy ran (every one failed; see meta.failed_policies)",
                  file=sys.stderr)
        return rc
    m = res.meta
    print(f"scenario {m['scenario']} (hash {m['scenario_hash']}), seeds {res.seeds[0]}…{res.seeds[-1]}, "
          f"reservation {m['reservation']}")
    print(format_table(short_status(res.results), RESULT_COLUMNS))
    print(delays_line(m))
    for label, reason in m.get("failed_policies", {}).items():
        print(f"failed: {label}: {reason}")
    if m.get("allocation_delay_note"):
        print(f"note: {m['allocation_delay_note']}")
    if m.get("allocation_delays_unequal_note"):
        print(f"note: {m['allocation_delays_unequal_note']}")
    if m["derived_calibrations"]:
        print(f"note: derived calibrations used: {', '.join(m['derived_calibrations'])}")
    for out in args.out:
        print(f"wrote {out}")
    if rc:
        print("distllm-env: error: --policies: no policy ran (every one failed; reasons above)", file=sys.stderr)
    return rc

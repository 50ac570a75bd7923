"""``distllm-env compare``: several policies on one scenario over paired seeds."""

from __future__ import annotations

import argparse

from ..compare import RESULT_COLUMNS, compare
from ..errors import PolicyLoadError, ScenarioError
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
    p.add_argument("--allocation-delays", choices=("auto", "scenario", "zero"), default="auto",
                   help="auto: the scenario's per-family delays unless a user/learned policy takes part (then 0); "
                        "scenario: always the scenario's; zero: none")
    add_results_out_arg(p, ".json (meta, results, per_seed), .csv (results as a plain table; meta and per_seed in "
                           "the sidecar F.csv.json) or .png (paired per-seed differences against the first policy)")
    add_format_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``distllm-env compare``; returns the exit code.

    Raises:
        ScenarioError: no policies, a bad ``--out``, seed, scenario or override (the CLI prints one line
            and exits 2).
        PolicyLoadError: a policy spec that cannot be resolved."""
    check_results_out(args.out)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if not policies:
        raise ScenarioError("--policies", "expected at least one policy")
    delays = None
    if args.allocation_delays == "zero":
        delays = {}
    elif args.allocation_delays == "scenario":
        from ..scenario import load_scenario

        delays = dict(load_scenario(args.scenario, args.overrides).simulator.allocation_delay_s)
    try:
        res = compare(args.scenario, policies, seeds_from(args), args.overrides, allocation_delays=delays,
                      allow_imports=args.allow_import)
    except PolicyLoadError as exc:      # every policy is resolved before anything runs: name the flag
        msg = str(exc)
        raise PolicyLoadError(msg if msg.startswith("--policies") else f"--policies: {msg}") from None
    for out in args.out:
        res.write(out)
    if args.format == "json":
        print_json({"meta": res.meta, "results": res.results, "per_seed": res.per_seed})
        return 0
    m = res.meta
    print(f"scenario {m['scenario']} (hash {m['scenario_hash']}), seeds {res.seeds[0]}…{res.seeds[-1]}, "
          f"reservation {m['reservation']}")
    print(format_table(res.results, RESULT_COLUMNS))
    print(f"allocation delays: {m['allocation_delays'] or 'none'} — {m['allocation_delay_rule']}")
    if m.get("allocation_delay_note"):
        print(f"note: {m['allocation_delay_note']}")
    if m["derived_calibrations"]:
        print(f"note: derived calibrations used: {', '.join(m['derived_calibrations'])}")
    for out in args.out:
        print(f"wrote {out}")
    return 0

"""``distllm-env reproduce table3|table6|table8``: the paper's experiment grids."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import reproduce as rp
from ..errors import ScenarioError
from ..outputs import json_safe
from ..parallel import add_parallel_args, parallel_from
from .common import add_format_arg, check_out_path, format_table, print_json


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="run the paper's experiment grids (Tables III, VI, VIII)",
                       description=rp.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=("table3", "table6", "table8"))
    p.add_argument("--seeds", type=int, default=20, help="Monte Carlo seeds 0…N−1 (default 20, as the paper's simulations)")
    p.add_argument("--trace", action="store_true",
                   help="table3: use the shipped published λ = 0.1 trace instead of Poisson(0.1) arrivals")
    p.add_argument("--fidelity", choices=rp.FIDELITIES, default="contracts",
                   help="table3/table6: 'authors-code' follows the published simulator's code in the four places "
                        "where it differs from docs/contracts.md (docs/fidelity.md); default 'contracts'")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field in every scenario of the grid, after the grid's own values and "
                        "--fidelity, e.g. --set fidelity.petals_penalty=session-count (repeatable)")
    p.add_argument("--out", default=None, help="write the full result as JSON (missing parent folders are created)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_parallel_args(p)
    add_format_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``distllm-env reproduce``; returns the exit code.

    Raises:
        ScenarioError: ``--seeds`` < 1 or an ``--out`` that is not .json (the CLI prints one line and
            exits 2)."""
    if args.seeds < 1:
        raise ScenarioError("--seeds", f"expected N ≥ 1, got {args.seeds}")
    if args.out is not None and not args.out.lower().endswith(".json"):
        raise ScenarioError("--out", f"expected a .json file, got {args.out!r}")
    if args.out is not None:
        check_out_path(args.out)
    seeds = list(range(args.seeds))
    parallel = parallel_from(args)
    progress = None if args.quiet or args.format == "json" else (lambda m: print(m, file=sys.stderr))
    if args.table == "table3":
        out = rp.table3(seeds, trace=args.trace, progress=progress, fidelity=args.fidelity, overrides=args.overrides,
                        parallel=parallel)
    elif args.table == "table6":
        out = rp.table6(seeds, progress=progress, fidelity=args.fidelity, overrides=args.overrides, parallel=parallel)
    else:
        out = rp.table8(seeds, progress=progress, overrides=args.overrides, parallel=parallel)
    if args.out:
        Path(args.out).write_text(json.dumps(json_safe(out), indent=1) + "\n")
    if args.format == "json":
        print_json(out)
        return 0
    if args.table == "table3":
        print(f"Table III — average per-token time (s), ours vs the published simulator; {len(seeds)} seeds; "
              f"{out['reading']}")
        print(format_table(_display_rows(out["rows"]), ["cluster", "lambda", "l", "policy", "ours_s", "ours_std_s", "published_sim_s",
                                         "rel_error", "published_experiment_s", "proposed_sessions"]))
        print()
        print("PETALS → proposed reduction (fraction), ours vs published simulator:")
        print(format_table(out["reductions"], ["cluster", "lambda", "l", "ours_reduction", "published_reduction",
                                               "difference_points"]))
        s = out["summary"]
        print(f"\nmean |rel. error| {s['mean_abs_rel_error']:.1%}, max {s['max_abs_rel_error']:.1%}; "
              f"{s['cells_within_25pct']}/{s['cells']} cells within 25 %; largest reduction difference "
              f"{s['max_reduction_difference_points']:.1f} points")
        _delays(out["meta"])
    elif args.table == "table6":
        fid = "" if args.fidelity == "contracts" else f"; fidelity: {args.fidelity} (docs/fidelity.md)"
        fid += f"; --set {' '.join(args.overrides)}" if args.overrides else ""
        print(f"Table VI grid — average per-token time (s), {len(seeds)} seeds; {out['published_summary']}{fid}")
        print(format_table(_display_rows(out["rows"])))
    else:
        print(f"Table VIII — algorithm running time (s), {len(seeds)} seeds; {out['definition']}")
        print(format_table(_display_rows(out["rows"])))
        if args.overrides:
            print(f"--set {' '.join(args.overrides)}")
    return 0


#: in the printed table only, a standard deviation this far below its mean is shown as 0: it is
#: floating-point noise of identical per-seed values (e.g. 1.858e-16); the JSON keeps the exact value
TINY_STD_RELATIVE = 1e-12


def _display_rows(rows: list[dict]) -> list[dict]:
    """Rows for the text table: ``None`` cells (``proposed_sessions`` on PETALS rows) print as "-", and
    a ``*_std*`` value below :data:`TINY_STD_RELATIVE` × the row's largest magnitude prints as 0."""
    out = []
    for row in rows:
        scale = max((abs(v) for v in row.values() if isinstance(v, float) and v == v), default=0.0)
        shown = {}
        for k, v in row.items():
            if v is None:
                v = "-"
            elif "_std" in k and isinstance(v, float) and abs(v) <= TINY_STD_RELATIVE * max(scale, 1.0):
                v = 0.0
            shown[k] = v
        out.append(shown)
    return out


def _delays(meta: dict) -> None:
    if meta.get("allocation_delays"):
        print(f"allocation delays (fitted constants of the published simulator): {meta['allocation_delays']}")

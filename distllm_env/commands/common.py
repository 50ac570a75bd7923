"""Shared CLI plumbing: scenario/override/seed arguments and table printing."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from typing import Any, Iterable, Sequence

from ..errors import ScenarioError
from ..outputs import check_out_path, json_safe
from ..scenario import Scenario, load_scenario


def add_scenario_args(p: argparse.ArgumentParser, required: bool = True, default: str | None = None) -> None:
    p.add_argument("--scenario", required=required and default is None, default=default,
                   help="preset name (see 'distllm-env scenarios list') or path to a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field, e.g. --set workload.arrival_rate_per_s=0.5 (repeatable)")
    add_allow_import_arg(p)


def add_allow_import_arg(p: argparse.ArgumentParser) -> None:
    """``--allow-import``: let the scenario's policy_defaults name ``module:Class`` import paths."""
    p.add_argument("--allow-import", dest="allow_import", action="store_true",
                   help="allow the scenario's policy_defaults.placement/routing to be a module:Class import path "
                        "(imports run code: only for scenario files you trust)")


def add_seed_arg(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=int, default=default, help=f"random seed (default {default})")


def add_seeds_args(p: argparse.ArgumentParser, default_base: int = 0, default_n: int = 1) -> None:
    p.add_argument("--seeds", type=int, default=default_n, metavar="N",
                   help=f"number of seeds: seed_base … seed_base+N−1 (default {default_n})")
    p.add_argument("--seed-base", type=int, default=default_base, help=f"first seed (default {default_base})")


def add_format_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")


RESULT_SUFFIXES = (".json", ".csv", ".png")


def add_results_out_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--out", action="append", default=[], metavar="FILE",
                   help=f"write results: {what}; repeatable; missing parent folders are created")


def check_results_out(outs) -> None:
    """Every --out path must end in .json, .csv or .png and be writable (:func:`check_out_path`; a
    .csv also needs its sidecar F.csv.json), checked before the run.

    Raises:
        ScenarioError: (path ``--out``) a suffix other than .json/.csv/.png, or a path that cannot be
            written."""
    for out in outs:
        if not out.lower().endswith(RESULT_SUFFIXES):
            raise ScenarioError("--out", f"expected a .json, .csv or .png file, got {out!r}")
        check_out_path(out, sidecar=out.lower().endswith(".csv"))


@contextlib.contextmanager
def cwd_on_import_path():
    """While a command runs, import paths given on its command line (``--placement``, ``--routing``,
    ``--policies``, ``--policy my_pkg.routing:MyRouter``) also find modules in the current directory,
    as under ``python -m``; no ``PYTHONPATH=.`` needed.  The directory is *appended* to ``sys.path``, so
    installed packages win over a local file of the same name, and removed afterwards."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def seeds_from(args) -> list[int]:
    """``[seed_base, …, seed_base + seeds − 1]`` from ``--seeds`` / ``--seed-base``.

    Raises:
        ScenarioError: ``--seeds`` < 1 or ``--seed-base`` < 0."""
    if args.seeds < 1:
        raise ScenarioError("--seeds", f"expected N ≥ 1, got {args.seeds}")
    if args.seed_base < 0:
        raise ScenarioError("--seed-base", f"expected a seed ≥ 0, got {args.seed_base}")
    return list(range(args.seed_base, args.seed_base + args.seeds))


def check_seed(seed: int) -> int:
    """``seed`` if it is ≥ 0.

    Raises:
        ScenarioError: (path ``--seed``) a negative seed."""
    if seed < 0:
        raise ScenarioError("--seed", f"expected a seed ≥ 0, got {seed}")
    return seed


def scenario_from(args) -> Scenario:
    return load_scenario(args.scenario, args.overrides)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A plain-text table with aligned columns."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in cells:
        out.append("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths)))
    return "\n".join(out)


def format_kv(pairs: Iterable[tuple[str, Any]]) -> str:
    pairs = list(pairs)
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width)}  {fmt(v)}" for k, v in pairs)


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def print_json(obj: Any) -> None:
    json.dump(json_safe(obj), sys.stdout, indent=1)
    sys.stdout.write("\n")

"""``distllm-env zoo list``: the agent zoo's recipes and shipped models (docs/agents.md "The agent zoo").

    distllm-env zoo list [--format json] [--zoo-dir DIR]

One row per name, in search order (the first zoo directory's names first): env id, scenario, algorithm, timesteps, seed, the model file's size (``-`` for a
recipe not yet trained into the zoo) and the recipe's description.  Zoo directories: ``--zoo-dir``,
then ``$DISTLLM_ENV_ZOO_DIR``, then the shipped one (:mod:`distllm_env.agents.zoo`).  Nothing heavier
than the recipe YAML and the sidecar JSON is read (torch and SB3 are not imported).
"""

from __future__ import annotations

import argparse

from .common import add_format_arg, format_table, print_json


def register(sub) -> None:
    p = sub.add_parser("zoo", help="list the agent zoo (recipes and shipped models)")
    zsub = p.add_subparsers(dest="action", metavar="ACTION")
    zsub.required = True
    pl = zsub.add_parser("list", help="list zoo entries: name, env id, scenario, model size, description")
    pl.add_argument("--zoo-dir", default=None, metavar="DIR",
                    help="zoo directory searched before $DISTLLM_ENV_ZOO_DIR and the shipped zoo")
    add_format_arg(pl)
    pl.set_defaults(func=_list)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.0f} KiB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MiB"


def _list(args: argparse.Namespace) -> int:
    from ..agents.zoo import entries, zoo_dirs

    rows = entries(args.zoo_dir)
    if args.format == "json":
        print_json(rows)
        return 0
    if not rows:
        print("the zoo is empty (searched: " + ", ".join(str(d) for d in zoo_dirs(args.zoo_dir)) + ")")
        return 0
    table = [{"name": r["name"], "env_id": r["env_id"], "scenario": r["scenario"], "algo": r["algo"],
              "timesteps": r["timesteps"], "size": _size(r["size_bytes"]),
              "description": r["description"][:60] + ("…" if len(r["description"]) > 60 else "")} for r in rows]
    print(format_table(table))
    if any(r["model"] is None for r in rows):
        print("(size '-': a recipe without a shipped model; train it with 'distllm-env train --zoo NAME "
              "--zoo-dir DIR', which writes the model into DIR)")
    return 0

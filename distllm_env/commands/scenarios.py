"""``distllm-env scenarios list|show|validate``."""

from __future__ import annotations

import argparse

from ..instance import build_instance
from ..scenario import list_presets, load_scenario
from ..registry import check_scenario_policies
from .common import add_allow_import_arg, add_format_arg, format_table, print_json


def register(sub) -> None:
    p = sub.add_parser("scenarios", help="list, show or validate scenarios")
    ssub = p.add_subparsers(dest="action", metavar="ACTION")
    ssub.required = True
    pl = ssub.add_parser("list", help="list the shipped presets")
    add_format_arg(pl)
    pl.set_defaults(func=_list)
    ps = ssub.add_parser("show", help="print a scenario's YAML (after overrides) and its seed's instance")
    ps.add_argument("scenario", help="preset name or YAML path")
    ps.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    ps.add_argument("--seed", type=int, default=0, help="seed for drawn servers/clients (default 0)")
    add_allow_import_arg(ps)
    ps.set_defaults(func=_show)
    pv = ssub.add_parser("validate", help="validate one or more scenarios (exit 2 on the first error)")
    pv.add_argument("scenarios", nargs="+", help="preset names or YAML paths")
    pv.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    add_allow_import_arg(pv)
    pv.set_defaults(func=_validate)


def _list(args: argparse.Namespace) -> int:
    rows = []
    for name in list_presets():
        sc = load_scenario(name)
        n_servers = len(build_instance(sc, 0).servers)
        rows.append({"name": name, "model": sc.model_name, "servers": n_servers, "hash": sc.hash,
                     "description": sc.description[:70] + ("…" if len(sc.description) > 70 else "")})
    if args.format == "json":
        print_json(rows)
    else:
        print(format_table(rows))
    return 0


def _show(args: argparse.Namespace) -> int:
    sc = load_scenario(args.scenario, args.overrides)
    check_scenario_policies(sc, args.allow_import)
    inst = build_instance(sc, args.seed)
    print(f"# scenario {sc.name} (source {sc.source}, hash {sc.hash})")
    print(sc.to_yaml().rstrip())
    print(f"# instance for seed {args.seed}: topology {inst.topology.name} ({inst.topology.num_nodes} nodes)")
    for s in inst.servers:
        cal = s.calibration
        tag = "derived" if cal.derived else "measured"
        print(f"#   s{s.index}: {s.gpu.name} at {s.node}, {s.memory_bytes / 1e9:.2f} GB, "
              f"tau {cal.tau_decode_s * 1e3:.4g} ms ({tag})")
    for c in inst.clients:
        print(f"#   client {c.index}: {c.node}" + (f", device {c.device.name}" if c.device else ""))
    return 0


def _validate(args: argparse.Namespace) -> int:
    for spec in args.scenarios:
        sc = load_scenario(spec, args.overrides)
        build_instance(sc, 0)  # the checks that need the drawn topology (node names, connectivity)
        check_scenario_policies(sc, args.allow_import)
        print(f"ok  {spec}  ({sc.name}, hash {sc.hash})")
    return 0

"""Benchmark of the BPRR MILP (issue 3, item 4): prints the three measured numbers and the
formulations' comparison.

Instances (all built with the core, seed 0):

1. ``paper-clustered`` (client in cluster 0, 9 servers: 2 A100 + 7 MIG), 3 requests of 20 + 128
   tokens: ``OfflineProblem.from_instance(build_instance(load_scenario("paper-clustered"), 0), 3)``.
   The published run (Gurobi, literal model) stopped at a 38.9 % gap after 200 s.
2. 20 servers, 3 clients, 10 requests: ``paper-bellcanada`` with the overrides
   ``servers={count: 20, gpu_mix: {A100-80GB: 0.2, MIG-1g.10gb: rest}}`` and ``clients.count=3``
   (4 A100 + 16 MIG on the Bellcanada topology, 3 client nodes drawn by seed 0), requests per client
   [4, 3, 3] (:func:`distllm_env.baselines.milp.split_sessions` of 10 over equal weights).
3. Memory-bound: instance 1 with 150 requests.

``--wall-bound`` instead checks that ``time_limit_s`` bounds the whole call (issue 9, item 6):
``paper-gtsce`` (60 servers, 1 client, seed 0) with 40 requests, formulations ``literal`` and ``rlt``,
a 5 s limit (``--time-limit``), printing each call's wall time, status and notes.

Usage::

    python benchmarks/milp.py                 # 200 s limits (about 12 minutes in all)
    python benchmarks/milp.py --time-limit 30 # shorter limits for a quick look
    python benchmarks/milp.py --json out.json
    python benchmarks/milp.py --wall-bound --time-limit 5

Wall-clock times depend on the machine and its load; HiGHS runs single-threaded (as everywhere in
distllm-env, for determinism).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import highspy

from distllm_env import __version__, load_scenario
from distllm_env.baselines.cg_bp import cg_bprr
from distllm_env.baselines.milp import solve_bprr, split_sessions
from distllm_env.baselines.milp_highs import new_highs
from distllm_env.errors import SolverTimeout
from distllm_env.instance import build_instance
from distllm_env.offline import OfflineProblem

BELLCANADA_20 = ["servers={count: 20, gpu_mix: {A100-80GB: 0.2, MIG-1g.10gb: rest}}", "clients.count=3"]


def run(label, problem, formulation, time_limit_s, **kw):
    t0 = time.perf_counter()
    try:
        sol = solve_bprr(problem, formulation, time_limit_s=time_limit_s, **kw)
    except SolverTimeout as exc:
        wall = time.perf_counter() - t0
        print(f"{label:<34} {formulation:<8} {'ws' if kw.get('warm_start', True) else 'no-ws':<6} "
              f"{wall:8.2f} s  no feasible solution: {exc}", flush=True)
        return {"instance": label, "formulation": formulation, **kw, "wall_s": wall, "status": "no_solution"}
    wall = time.perf_counter() - t0
    row = {"instance": label, "formulation": formulation, **{k: kw[k] for k in kw}, "time_limit_s": time_limit_s,
           "wall_s": wall, **sol.diagnostics()}
    print(f"{label:<34} {formulation:<8} {'ws' if kw.get('warm_start', True) else 'no-ws':<6} "
          f"{wall:8.2f} s  status={sol.status:<10} proven={str(sol.proven_optimal):<5} "
          f"obj={sol.objective_s:11.3f} s  per-token={sol.per_token_s:.4f} s  bound={sol.bound_s:11.3f}  "
          f"gap={sol.gap:8.2%}  solver-gap={sol.solver_gap:9.2%}  proof={sol.proof}  vars={sol.num_vars}",
          flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--time-limit", type=float, default=200.0, help="time limit per solve (s), default 200")
    ap.add_argument("--skip-literal", action="store_true", help="skip the literal formulation runs")
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--wall-bound", action="store_true",
                    help="only the wall-clock check: paper-gtsce, 40 requests, literal and rlt")
    args = ap.parse_args(argv)
    T = args.time_limit
    print(f"distllm-env {__version__}, highspy {new_highs().version()}, Python {platform.python_version()}, "
          f"{platform.machine()}; time limit {T:g} s per solve")
    rows = []
    if args.wall_bound:
        gtsce = build_instance(load_scenario("paper-gtsce"), 0)
        p40 = OfflineProblem.from_instance(gtsce, split_sessions(gtsce, 40))
        print(f"\n[wall] paper-gtsce, seed 0: {gtsce.num_servers} servers, {gtsce.num_clients} client(s), "
              f"requests {p40.requests.tolist()}")
        for formulation in ("literal", "rlt"):
            row = run("paper-gtsce 40 req", p40, formulation, T)
            print(f"    wall {row['wall_s']:.2f} s for a {T:g} s limit; notes: {row.get('notes')}", flush=True)
            rows.append(row)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"version": __version__, "time_limit_s": T, "rows": rows}, fh, indent=1, default=str)
        return

    clustered = build_instance(load_scenario("paper-clustered"), 0)
    p3 = OfflineProblem.from_instance(clustered, 3)
    _, _, cg3 = cg_bprr(p3, 3)
    print(f"\n[1] paper-clustered, 3 requests (20 + 128 tokens); CG-BPRR objective {cg3:.3f} s")
    rows.append(run("paper-clustered 3 req", p3, "arcflow", T))
    rows.append(run("paper-clustered 3 req", p3, "arcflow", T, warm_start=False))
    rows.append(run("paper-clustered 3 req", p3, "rlt", T))
    if not args.skip_literal:
        rows.append(run("paper-clustered 3 req", p3, "literal", T))
        rows.append(run("paper-clustered 3 req", p3, "literal", T, warm_start=False))

    bell = build_instance(load_scenario("paper-bellcanada", overrides=BELLCANADA_20), 0)
    p10 = OfflineProblem.from_instance(bell, split_sessions(bell, 10))
    _, _, cg10 = cg_bprr(p10, 10)
    print(f"\n[2] paper-bellcanada with {BELLCANADA_20}, seed 0: {bell.num_servers} servers, {bell.num_clients} "
          f"clients, requests {p10.requests.tolist()}; CG-BPRR objective {cg10:.3f} s")
    rows.append(run("bellcanada 20 srv / 3 cl / 10 req", p10, "arcflow", T))

    p150 = OfflineProblem.from_instance(clustered, 150)
    _, _, cg150 = cg_bprr(p150, 150)
    print(f"\n[3] paper-clustered, 150 requests (memory-bound); CG-BPRR objective {cg150:.3f} s "
          f"({cg150 / (150 * 128):.4f} s per token)")
    rows.append(run("paper-clustered 150 req", p150, "arcflow", T))

    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"version": __version__, "time_limit_s": T, "rows": rows}, fh, indent=1, default=str)


if __name__ == "__main__":
    main()

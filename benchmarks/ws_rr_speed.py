"""WS-RR decision time on paper-gtsce (60 servers): median and p95 wall time of one routing decision.

Target (issue 3): median ≤ 1 ms.  Each seed runs the full simulation (CG-BP placement, 100 requests)
and times every ``route()`` call; the numbers are pooled over seeds.  The machine may be shared, so
repeat the run before trusting a single measurement.

    python benchmarks/ws_rr_speed.py [--scenario paper-gtsce] [--seeds 5] [--routing ws-rr] [--set K=V ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from distllm_env.api import run_routing, place
from distllm_env.instance import build_instance
from distllm_env.policies import family_of, make_routing
from distllm_env.rng import generators, seed_streams
from distllm_env.scenario import load_scenario
from distllm_env.simulator import Simulation
from distllm_env.workload import generate_requests


def decision_times(scenario: str, routing: str, placement: str, seed: int, overrides) -> tuple[list[float], dict]:
    """Per-decision wall times (s) for one seed, timed around ``route()`` by the core's run loop."""
    sc = load_scenario(scenario, overrides)
    inst = build_instance(sc, seed)
    reqs = generate_requests(inst, seed)
    placement_rng, routing_rng = generators(seed_streams(seed)["policy"], 2)
    presult, _, t_place = place(inst, placement, placement_rng, sc)
    router = make_routing(routing, sc)
    fam = family_of(placement, routing)
    delays = sc.simulator.allocation_delay_s
    sim = Simulation(inst, presult, reqs, reservation=sc.simulator.reservation, backoff=sc.simulator.backoff,
                     allocation_delay_s=float(delays.get(fam, delays.get("default", 0.0))))
    times = run_routing(sim, router, routing_rng)
    dag = sim.view.feasible_dag(0)
    return times, {"servers": inst.num_servers, "dag_nodes": dag.n, "dag_edges": dag.num_edges,
                   "placement_s": t_place}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="paper-gtsce")
    ap.add_argument("--routing", default="ws-rr")
    ap.add_argument("--placement", default="cg-bp")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    pooled = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        times, info = decision_times(args.scenario, args.routing, args.placement, seed, args.overrides)
        pooled += times
        t = np.asarray(times) * 1e3
        print(f"seed {seed}: {info['servers']} servers, DAG {info['dag_nodes']} nodes / {info['dag_edges']} edges, "
              f"placement {info['placement_s'] * 1e3:.1f} ms, {len(t)} decisions: median {np.median(t):.3f} ms, "
              f"p95 {np.percentile(t, 95):.3f} ms, max {t.max():.3f} ms")
    t = np.asarray(pooled) * 1e3
    print(f"{args.routing} on {args.scenario} ({args.placement} placement), {args.seeds} seeds, {len(t)} decisions: "
          f"median {np.median(t):.3f} ms, p95 {np.percentile(t, 95):.3f} ms, mean {t.mean():.3f} ms "
          f"(total wall {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()

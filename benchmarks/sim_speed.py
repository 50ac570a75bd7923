"""Simulator speed (issue 2): wall time and simulated requests per second, timed from the
``simulate()`` call to its summary (scenario construction excluded).

1. ``paper-gtsce``: 100 requests, ``shortest`` routing, the default placement (target < 0.2 s).
2. A generated scenario: random geographic topology with 1,000 nodes, 1,000 servers on distinct
   nodes (20 % A100-80GB, the rest MIG 1g.10gb), BLOOM-176B, one client, ``even`` placement,
   ``shortest`` routing, 100,000 requests at λ = half of the placement's session capacity
   (target < 120 s on one core).  Session capacity: with static shortest routing every request takes
   the same chain, so capacity = min over its hops of ⌊KV capacity / KV bytes per session on that hop⌋
   concurrent sessions, divided by one session's hold time (initial delay + service time).

3. Overload (issue 9, item 7): ``cg-bp`` + ``ws-rr`` on a 60-server random geographic scenario
   (20 % A100-80GB, BLOOM-176B, one client) at λ = 8 requests/s, more than it serves, so requests
   queue and the backlog grows with the number of requests.  Run for 2,000 … 100,000 requests; the
   cost per request must not grow with the number of requests (the reservation calendar answers
   every query in O(log n) plus the segments it must look at; see distllm_env/step_function.py).

Usage: python benchmarks/sim_speed.py [--requests 100000] [--repeats 5] [--only overload]
                                      [--overload 2000,4000,8000,16000,32000,64000,100000]
                                      [--reservation calendar|published]
"""

from __future__ import annotations

import argparse
import statistics
import time

from distllm_env import load_scenario, simulate
from distllm_env.instance import build_instance
from distllm_env.placement import PlacementResult
from distllm_env.policies import default_placement, make_placement
from distllm_env.rng import generators, seed_streams
from distllm_env.simulator import Simulation
from distllm_env.workload import Request


def bench_gtsce(repeats: int) -> None:
    sc = load_scenario("paper-gtsce")
    placement = default_placement(sc)
    times = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        res = simulate(sc, placement, "shortest", seed=seed)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"paper-gtsce, 100 requests, placement {placement}, shortest routing: median {med:.4f} s over "
          f"{repeats} seeds (min {min(times):.4f}, max {max(times):.4f}); "
          f"{res.summary['num_requests'] / med:,.0f} simulated requests/s   [target < 0.2 s]")


def generated_scenario(num_requests: int, rate: float) -> dict:
    return {
        "name": "generated-1000",
        "description": "1,000 servers on a random geographic topology (sim_speed benchmark)",
        "model": "BLOOM-176B",
        "topology": {"geo": {"num_nodes": 1000, "k_nearest": 3}},
        "servers": {"count": 1000, "gpu_mix": {"A100-80GB": 0.2, "MIG-1g.10gb": "rest"}},
        "clients": {"count": 1},
        "workload": {"arrival": "poisson", "arrival_rate_per_s": rate, "num_requests": num_requests,
                     "prompt_tokens": 20, "output_tokens": 128},
        "simulator": {"reservation": "calendar", "backoff": True},
    }


def session_capacity_per_s(sc, seed: int = 0) -> tuple[float, int, float]:
    """(sessions/s, concurrent sessions, hold time) of the even placement's shortest chain."""
    inst = build_instance(sc, seed)
    placement_rng, _ = generators(seed_streams(seed)["policy"], 2)
    pr: PlacementResult = make_placement("even", sc).place(inst, placement_rng)
    req = Request(0, 0, 0.0, 20, 128)
    sim = Simulation(inst, pr, [req], reservation="calendar", backoff=False)
    sim.next_request()
    route, _ = sim.view.shortest(0, sim.view.decode_cost(0))
    out = sim.evaluate(req, route)
    concurrent = min(int(sim.capacity_bytes[j]) // need for j, need in out.hops)
    return concurrent / out.hold_s, concurrent, out.hold_s


def bench_generated(num_requests: int) -> None:
    probe = load_scenario(generated_scenario(10, 1.0))
    cap, concurrent, hold = session_capacity_per_s(probe)
    rate = 0.5 * cap
    sc = load_scenario(generated_scenario(num_requests, rate))
    t0 = time.perf_counter()
    res = simulate(sc, "even", "shortest", seed=0)
    wall = time.perf_counter() - t0
    s = res.summary
    print(f"generated: 1,000 servers (20 % A100), BLOOM-176B, 1 client, {num_requests:,} requests at "
          f"λ = {rate:.4f}/s (half of {concurrent} sessions / {hold:.1f} s): {wall:.2f} s wall, "
          f"{num_requests / wall:,.0f} simulated requests/s   [target < 120 s]")
    print(f"  completed {s['num_completed']:,}, rejected {s['num_rejected']}, mean wait {s['wait_mean_s']:.3f} s, "
          f"mean per-token {s['mean_per_token_time_s']:.4f} s, hops {s['mean_hops']:.1f}, "
          f"placement {res.timings['placement_time_s']:.3f} s")


def overload_scenario(num_requests: int, servers: int = 60, rate: float = 8.0, reservation: str = "calendar") -> dict:
    return {
        "name": f"overload-{servers}",
        "description": f"{servers} servers at λ = {rate}/s, more than they serve (sim_speed overload case)",
        "model": "BLOOM-176B",
        "topology": {"geo": {"num_nodes": servers, "k_nearest": 3}},
        "servers": {"count": servers, "gpu_mix": {"A100-80GB": 0.2, "MIG-1g.10gb": "rest"}},
        "clients": {"count": 1},
        "workload": {"arrival": "poisson", "arrival_rate_per_s": rate, "num_requests": num_requests,
                     "prompt_tokens": 20, "output_tokens": 128},
        "simulator": {"reservation": reservation, "backoff": True},
    }


def bench_overload(counts: list[int], servers: int = 60, rate: float = 8.0, reservation: str = "calendar") -> None:
    print(f"overload: cg-bp + ws-rr, {servers} servers, λ = {rate}/s (requests queue), {reservation} reservations")
    for n in counts:
        sc = load_scenario(overload_scenario(n, servers, rate, reservation))
        t0 = time.perf_counter()
        res = simulate(sc, "cg-bp", "ws-rr", seed=0)
        wall = time.perf_counter() - t0
        s = res.summary
        print(f"  {n:>7,} requests: {wall:8.2f} s wall, {1e3 * wall / n:6.3f} ms/request; completed "
              f"{s['num_completed']:,}, mean wait {s['wait_mean_s']:,.1f} s, mean hops {s['mean_hops']:.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--overload", default="2000,4000,8000,16000,32000,64000,100000",
                    help="comma-separated request counts for the overload case")
    ap.add_argument("--reservation", choices=("calendar", "published"), default="calendar",
                    help="reservation mode of the overload case")
    ap.add_argument("--only", choices=("gtsce", "generated", "overload"), default=None)
    args = ap.parse_args()
    if args.only in (None, "gtsce"):
        bench_gtsce(args.repeats)
    if args.only in (None, "generated"):
        bench_generated(args.requests)
    if args.only in (None, "overload"):
        bench_overload([int(x) for x in args.overload.split(",") if x.strip()], reservation=args.reservation)


if __name__ == "__main__":
    main()

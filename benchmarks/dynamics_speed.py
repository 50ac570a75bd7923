"""Live-engine speed (issue 11, "Speed"): wall time of ``simulate()`` under ``server_model: serial``.

1. The generated 1,000-server geographic scenario of benchmarks/sim_speed.py (1,000 nodes, 20 %
   A100-80GB, the rest MIG 1g.10gb, BLOOM-176B, one client, ``even`` placement, ``shortest``
   routing), with ``simulator.server_model: serial`` and 10,000 / 20,000 / 100,000 requests (target
   for 100k: < 120 s on one core; the cost must grow linearly from 10k to 100k).  Arrival rate: half
   the serial capacity of the static chain every request takes: one session needs l_out decode steps
   on each hop, so the chain serves at most 1 / (l_out · max_h m_h·τ_h) sessions/s — and no more than
   its KV memory allows (the sim_speed rule).
2. The whole Azure conv trace (19,366 requests; ``trace_offset`` 0, every request) on the
   ``azure-conv-serial`` preset (serial servers, unknown output lengths), default policies cg-bp +
   ws-rr, at the preset's ``time_scale`` (target < 60 s on one core).

Usage: python benchmarks/dynamics_speed.py [--requests 10000,20000,100000] [--model serial] [--skip-generated]
       [--skip-trace]

Wall-clock numbers depend on the machine and on what else runs on it (CPU time is printed too:
wall ≫ CPU means the machine was shared); re-run before quoting them.
"""

from __future__ import annotations

import argparse
import time

from distllm_env import load_scenario, simulate
from distllm_env.instance import build_instance
from distllm_env.placement import PlacementResult
from distllm_env.policies import make_placement
from distllm_env.rng import generators, seed_streams
from distllm_env.simulator import Simulation
from distllm_env.workload import Request

OUTPUT_TOKENS = 128


def generated_scenario(num_requests: int, rate: float, model: str) -> dict:
    return {
        "name": "generated-1000-dynamics",
        "description": "1,000 servers on a random geographic topology (dynamics_speed benchmark)",
        "model": "BLOOM-176B",
        "topology": {"geo": {"num_nodes": 1000, "k_nearest": 3}},
        "servers": {"count": 1000, "gpu_mix": {"A100-80GB": 0.2, "MIG-1g.10gb": "rest"}},
        "clients": {"count": 1},
        "workload": {"arrival": "poisson", "arrival_rate_per_s": rate, "num_requests": num_requests,
                     "prompt_tokens": 20, "output_tokens": OUTPUT_TOKENS},
        "simulator": {"reservation": "calendar", "backoff": True, "server_model": model},
    }


def serial_capacity_per_s(sc, seed: int = 0) -> tuple[float, float]:
    """(serial sessions/s, memory sessions/s) of the even placement's shortest chain."""
    inst = build_instance(sc, seed)
    placement_rng, _ = generators(seed_streams(seed)["policy"], 2)
    pr: PlacementResult = make_placement("even", sc).place(inst, placement_rng)
    req = Request(0, 0, 0.0, 20, OUTPUT_TOKENS)
    sim = Simulation(inst, pr, [req], reservation="calendar", backoff=False)
    sim.next_request()
    route, _ = sim.view.shortest(0, sim.view.static_cost(req))
    out = sim.evaluate(req, route)
    step = max(float(inst.tau_decode_s[h.server]) * h.blocks for h in route.hops)
    memory = min(int(sim.capacity_bytes[j]) // need for j, need in out.hops) / out.hold_s
    return 1.0 / (OUTPUT_TOKENS * step), memory


def bench(num_requests: list[int], model: str) -> None:
    probe = load_scenario(generated_scenario(10, 1.0, model))
    serial_cap, memory_cap = serial_capacity_per_s(probe)
    rate = 0.5 * min(serial_cap, memory_cap)
    print(f"generated 1,000-server scenario, {model}: chain capacity {serial_cap:.4f} sessions/s (steps), "
          f"{memory_cap:.4f} sessions/s (memory); λ = {rate:.4f}/s")
    for n in num_requests:
        sc = load_scenario(generated_scenario(n, rate, model))
        t0, c0 = time.perf_counter(), time.process_time()
        res = simulate(sc, "even", "shortest", seed=0)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        s = res.summary
        print(f"  {n:>7,} requests: {dt:8.2f} s wall, {cpu:8.2f} s CPU  ({n / dt:,.0f} requests/s, "
              f"{cpu / n * 1e6:.1f} CPU µs/request); "
              f"engine {res.meta['engine']}, mean per-token {s['mean_per_token_time_s']:.4f} s, "
              f"wait mean {s['wait_mean_s']:.3f} s, completed {s['num_completed']}")


def bench_trace(preset: str = "azure-conv-serial") -> None:
    sc = load_scenario(preset, overrides=["workload.trace_offset=", "workload.num_requests="])
    t0, c0 = time.perf_counter(), time.process_time()
    res = simulate(sc, seed=0)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    s = res.summary
    print(f"{preset}, whole trace ({s['num_requests']:,} requests, time_scale {sc.workload.time_scale:g}): "
          f"{dt:8.2f} s wall, {cpu:8.2f} s CPU ({s['num_requests'] / dt:,.0f} requests/s); engine {res.meta['engine']}, "
          f"completed {s['num_completed']}, rejected {s['num_rejected']}, mean per-token "
          f"{s['mean_per_token_time_s']:.3f} s, wait mean {s['wait_mean_s']:.1f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", default="10000,20000,100000")
    ap.add_argument("--model", default="serial", choices=("serial", "batched", "independent"))
    ap.add_argument("--skip-generated", action="store_true", help="skip the 1,000-server scenario")
    ap.add_argument("--skip-trace", action="store_true", help="skip the whole conv trace on azure-conv-serial")
    args = ap.parse_args()
    if not args.skip_trace:
        bench_trace()
    if not args.skip_generated:
        bench([int(x) for x in args.requests.split(",")], args.model)


if __name__ == "__main__":
    main()

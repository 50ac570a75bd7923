"""Shared builders for the live-engine tests (tests/test_live_*.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from distllm_env.api import place
from distllm_env.instance import build_instance
from distllm_env.live.engine import LiveSimulation
from distllm_env.live.reference import RefSession
from distllm_env.placement import Placement
from distllm_env.scenario import load_scenario
from distllm_env.workload import Request
from distllm_env.yaml_safe import load_yaml_text

TINY = Path(__file__).resolve().parents[1] / "scenarios" / "tiny.yaml"


def tiny_spec(memory_gb: float | None = None, **simulator) -> dict:
    """The ``tiny`` preset with ``simulator`` keys replaced (and a smaller GPU memory, so that KV
    memory is scarce and sessions wait for admission)."""
    spec = copy.deepcopy(load_yaml_text(TINY.read_text()))
    spec["simulator"] = {**spec["simulator"], **simulator}
    if memory_gb is not None:
        spec["gpus"]["toy-gpu"]["memory_gb"] = memory_gb
    return spec


#: a placement of ``tiny``'s 8 blocks on its 4 servers with 3 blocks each and several chains
OVERLAPPING = Placement(starts=(0, 3, 5, 1), counts=(3, 3, 3, 3), num_blocks=8)


def instance_and_placement(spec: dict, placement=OVERLAPPING):
    sc = load_scenario(spec)
    inst = build_instance(sc, 0)
    presult, _, _ = place(inst, placement, np.random.default_rng(0), sc)
    return inst, presult


def random_requests(rng: np.random.Generator, n: int, rate: float, unknown: bool) -> list[Request]:
    gaps = rng.exponential(1.0 / rate, size=n)
    arrivals = np.cumsum(gaps)
    out = []
    for i in range(n):
        prompt = int(rng.integers(1, 40))
        true = int(rng.integers(1, 12))
        declared = true + int(rng.integers(0, 12)) if unknown else true
        out.append(Request(id=i, client=0, arrival_s=float(arrivals[i]), prompt_tokens=prompt, output_tokens=true,
                           declared_output_tokens=declared, output_tokens_known=not unknown))
    return out


def run_live(sim: LiveSimulation, rng: np.random.Generator, K: int = 4) -> dict:
    """Route every request on a random one of its K cheapest chains; returns {request id: route}."""
    routes = {}
    while (req := sim.next_request()) is not None:
        cands = sim.view.k_cheapest(req.client, K, sim.view.static_cost(req))
        route = cands[int(rng.integers(len(cands)))][0]
        routes[req.id] = route
        sim.commit(req, route)
    return routes


def reference_sessions(inst, requests, routes, lead_s: float) -> list[RefSession]:
    """Reference inputs computed from the instance arrays directly (docs/model.md §4.3)."""
    out = []
    for r in requests:
        route = routes[r.id]
        c = r.client
        servers = [h.server for h in route.hops]
        per_block = inst.model.kv_bytes_per_block(r.prompt_tokens, r.declared_output_tokens)
        tau_p = inst.tau_prefill_s(r.prompt_tokens)
        out.append(RefSession(
            rid=r.id, arrival_s=r.arrival_s, servers=servers,
            spans=[(h.first_block, h.last_block) for h in route.hops],
            need=[h.blocks * per_block for h in route.hops],
            comm_prefill=[float(inst.rtt_s[c, j] + inst.prefill_overhead_slope_s * r.prompt_tokens
                                + inst.prefill_overhead_intercept_s) for j in servers],
            comm_decode=[float(inst.token_cost_s[c, j]) for j in servers],
            comp_prefill=[float(tau_p[h.server] * h.blocks) for h in route.hops],
            comp_decode=[float(inst.tau_decode_s[h.server] * h.blocks) for h in route.hops],
            tokens=r.output_tokens, lead_s=lead_s))
    return out


def drive_churn_checked(sim, router, rng):
    """Route every request of a churn simulation ``sim`` with ``router`` and check, before each
    decision, that no server's memory is over-committed, that ``used_bytes`` equals what its holders
    hold, that a down server holds nothing, and that the router offers only servers that are up.
    A ``NoFeasibleChain`` (every chain broken while servers are down) is recorded as a rejection.
    Returns ``sim.finished_records()``."""
    cap = sim.capacity_bytes
    while (req := sim.next_request()) is not None:
        for j in range(len(cap)):
            held = sum(sim.sessions[sid].need_bytes[h] for sid, h in sim.holders[j].items())
            assert 0 <= sim.used_bytes[j] == held <= cap[j]
            if sim.state[j] == 2:                        # DOWN: holds nothing
                assert sim.used_bytes[j] == 0
        try:
            route = router.route(req, sim.view, rng)
        except Exception as exc:                         # NoFeasibleChain while servers are down
            assert type(exc).__name__ == "NoFeasibleChain"
            sim.reject(req, "no_feasible_chain")
            continue
        assert all(sim.state[x.server] == 0 for x in route.hops)   # routers see only servers up
        sim.commit(req, route)
    return sim.finished_records()

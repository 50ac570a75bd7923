"""The ``lookahead`` router (baselines/lookahead.py; docs/baselines.md "Lookahead"): it completes with
every request accounted for exactly once, beats its base where greedy routing provably hurts later
requests, is deterministic per seed, and never reads the true future."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest

from distllm_env.api import simulate
from distllm_env.errors import ScenarioError
from distllm_env.instance import build_instance
from distllm_env.outputs import requests_csv
from distllm_env.placement import Placement
from distllm_env.registry import make_routing
from distllm_env.scenario import load_scenario
from distllm_env.workload import generate_requests
from distllm_env.yaml_safe import load_yaml_text

TINY = Path(__file__).resolve().parents[1] / "scenarios" / "tiny.yaml"
#: both servers host the whole 2-block model
BOTH = Placement(starts=(0, 0), counts=(2, 2), num_blocks=2)


def trap_spec() -> dict:
    """Two servers, each with KV room for ONE session: A (fast GPU, node c0n0) and B (2.2 vs 2.0 ms
    per block-token, c1n0).  Client 0 (c2n0) is 40 ms from both, so WS-RR sends it to A (0.4 ms per
    token cheaper); client 1 sits on A's node (0 ms to A, 40 ms to B), so every client-1 request that
    arrives while a client-0 session holds A waits for A or pays 40 ms more per token on B.  A router
    that looks ahead puts client 0 on B and keeps A for client 1."""
    spec = copy.deepcopy(load_yaml_text(TINY.read_text()))
    spec["name"] = "lookahead-trap"
    spec["models"]["toy-8L"]["num_blocks"] = 2
    spec["gpus"]["toy-gpu"]["memory_gb"] = 0.0515           # weights + KV of one session per server
    slow = copy.deepcopy(spec["gpus"]["toy-gpu"])
    slow["calibration"]["toy-8L"]["tau_decode_ms"] = 2.2
    spec["gpus"]["slow-gpu"] = slow
    spec["topology"] = {"clusters": {"sizes": [1, 1, 1], "intra_rtt_ms": 5, "inter_rtt_ms": 40}}
    spec["servers"] = [{"gpu": "toy-gpu", "node": "c0n0"}, {"gpu": "slow-gpu", "node": "c1n0"}]
    spec["clients"] = [{"node": "c2n0"}, {"node": "c0n0"}]
    spec["workload"].update(arrival_rate_per_s=1.0, num_requests=40)
    return spec


def check_accounted(res, n: int) -> None:
    assert [r.request_id for r in res.records] == list(range(n))          # each request exactly once
    assert all(r.status in ("completed", "rejected") for r in res.records)
    for r in res.records:
        if r.completed:
            assert math.isfinite(r.completion_s) and r.arrival_s <= r.start_s <= r.first_token_s <= r.completion_s
    assert res.summary["num_completed"] + res.summary["num_rejected"] == n


def test_smoke_analytic_every_request_accounted_for():
    res = simulate("paper-clustered", "cg-bp", "lookahead", seed=10000,
                   overrides=["workload.num_requests=30", "workload.arrival_rate_per_s=2"])
    check_accounted(res, 30)
    assert res.routing_name == "lookahead"


def test_smoke_live_batched_unknown_lengths():
    router = make_routing("lookahead", options={"horizon": 3, "rollouts": 1, "k": 2})
    res = simulate("azure-conv-swarm", None, router, seed=10000, overrides=["workload.num_requests=12"])
    assert res.meta["engine"] == "live"
    check_accounted(res, 12)


def test_lookahead_beats_its_base_where_greedy_hurts_later_requests():
    spec = trap_spec()
    base = simulate(spec, BOTH, "ws-rr", seed=1)
    look = simulate(spec, BOTH, make_routing("lookahead", options={"base": "ws-rr"}), seed=1)
    check_accounted(look, 40)
    # WS-RR sends the first client-0 request to the fast server A; lookahead keeps A for client 1
    first0 = next(r for r in base.records if r.client == 0)
    assert base.records[first0.request_id].route.hops[0].server == 0
    assert look.records[first0.request_id].route.hops[0].server == 1
    assert look.summary["mean_per_token_time_s"] < 0.95 * base.summary["mean_per_token_time_s"]


def test_deterministic_per_seed():
    spec = trap_spec()
    runs = [requests_csv(simulate(spec, BOTH, "lookahead", seed=s).records) for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_never_reads_the_true_future():
    """Changing the requests after request m leaves every decision up to m unchanged."""
    spec = trap_spec()
    inst = build_instance(load_scenario(spec), 5)
    reqs = generate_requests(inst, 5)
    m = 15
    other = reqs[:m + 1] + [replace(r, client=1 - r.client, output_tokens=8, declared_output_tokens=8)
                            for r in reqs[m + 1:]]
    a = simulate(spec, BOTH, "lookahead", seed=5, requests=reqs)
    b = simulate(spec, BOTH, "lookahead", seed=5, requests=other)
    assert [r.route for r in a.records[:m + 1]] == [r.route for r in b.records[:m + 1]]
    assert [r.route for r in a.records] != [r.route for r in b.records]


@pytest.mark.parametrize("option,value", [("k", 0), ("horizon", -1), ("rollouts", 1.5), ("base", "lookahead"),
                                          ("base", "nope")])
def test_bad_options_name_the_field(option, value):
    with pytest.raises(ScenarioError, match=f"policy_defaults.options.lookahead.{option}"):
        make_routing("lookahead", options={option: value})

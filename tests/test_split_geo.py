"""Split inference inside the geo-distributed simulator: the client-prefix splitter with the routers."""

from __future__ import annotations

import numpy as np
import pytest

from distllm_env import simulate
from distllm_env.catalog import GIB
from distllm_env.errors import ScenarioError
from distllm_env.instance import build_instance
from distllm_env.policies import ROUTING_POLICIES, is_available
from distllm_env.scenario import load_scenario
from distllm_env.split.geo import GeoSplitter
from distllm_env.workload import Request

OVR = ["workload.num_requests=24"]


def _expected_hold_s(inst, rec, part) -> float:
    """Initial delay + service time of a completed record, computed here from the instance arrays
    (prefill pass + (l−1) decode passes over the hops, plus the client's own blocks)."""
    n, l, c = rec.prompt_tokens, rec.output_tokens, rec.client
    service = part.prefill_s + (l - 1) * part.per_token_s
    for h in rec.route.hops:
        j, m = h.server, h.blocks
        prefill = (inst.rtt_s[c, j] + inst.prefill_overhead_slope_s * n + inst.prefill_overhead_intercept_s
                   + m * (inst.prefill_slope_s[j] * n + inst.prefill_intercept_s[j]))
        decode = inst.token_cost_s[c, j] + m * inst.tau_decode_s[j]
        service += prefill + (l - 1) * decode
    return inst.initial_delay_s + service


def test_geo_splitter_with_shortest_routing():
    sp = GeoSplitter("dp")
    res = simulate("splitllm-edge", "even", "shortest", seed=0, overrides=OVR, splitter=sp)
    inst = res.instance
    assert len(sp.history) == 24 and res.summary["num_rejected"] == 0
    split_requests = 0
    for rec, (rid, plan, part) in zip(res.records, sp.history):
        assert rid == rec.request_id and rec.client_blocks == part.blocks
        assert rec.route.hops[0].first_block == part.blocks and rec.route.hops[-1].last_block == inst.num_blocks - 1
        assert rec.completion_s - rec.start_s == pytest.approx(_expected_hold_s(inst, rec, part), rel=1e-9)
        req = Request(rec.request_id, rec.client, rec.arrival_s, rec.prompt_tokens, rec.output_tokens)
        assert part.blocks <= sp.max_client_blocks(req, inst) <= inst.num_blocks - 1
        if plan is not None:
            assert plan.latency_s <= plan.sla_s * (1 + 1e-9)
            # uniform blocks: the least-time optimal DP plan is a client prefix
            assert plan.client_layers == part.blocks and np.all(plan.x[: part.blocks] == 1)
        split_requests += part.blocks > 0
    assert split_requests > 0


def test_client_part_times_by_hand():
    inst = build_instance(load_scenario("splitllm-edge"), 0)
    sp = GeoSplitter("dp")
    req = Request(0, 3, 0.0, 128, 32)                    # desktop-gpu client
    part = sp.client_part(req, inst, 5)
    d, D, n, g = 8192, 2 * 855_654_400, 128, 31
    flops = 165.2e12 * 0.3
    read_s = inst.block_bytes / 1008e9          # one pass over a block's NF4 weights at 1,008 GB/s
    # roofline: the prompt pass is compute-bound, a decode step is bound by reading the weights
    assert part.prefill_s == pytest.approx(5 * max((D * n + 4 * n * n * d) / flops, read_s))
    mean_step_flops = (g * D + 4 * d * (g * n + g * (g + 1) / 2)) / g
    assert mean_step_flops / flops < read_s
    assert part.per_token_s == pytest.approx(5 * read_s)
    assert sp.client_part(req, inst, 0).blocks == 0


def test_client_memory_is_enforced():
    inst = build_instance(load_scenario("splitllm-edge"), 0)
    sp = GeoSplitter("dp")
    req = Request(0, 0, 0.0, 128, 32)                    # phone-soc, 8 GiB
    per_block = inst.block_bytes + inst.model.kv_bytes_per_block(128, 32)
    assert sp.max_client_blocks(req, inst) == (8 * GIB) // per_block
    assert sp.max_client_blocks(Request(0, 2, 0.0, 128, 32), inst) == inst.num_blocks - 1   # 64 GiB Jetson
    with pytest.raises(ScenarioError, match="blocks"):
        sp.client_part(req, inst, sp.max_client_blocks(req, inst) + 1)
    tiny = GeoSplitter("dp", memory_fraction=1e-3)       # no device can hold one block
    res = simulate("splitllm-edge", "even", "shortest", seed=1, overrides=OVR, splitter=tiny)
    assert all(r.client_blocks == 0 for r in res.records)
    assert all(part.blocks == 0 and plan is None for _, plan, part in tiny.history)


def test_client_without_device_runs_nothing_and_policies_are_pluggable():
    sp = GeoSplitter("prefix-greedy", sla_factor=2.0)
    res = simulate("splitllm-edge", "even", "shortest", seed=2, splitter=sp,
                   overrides=OVR + ["clients.3.device=null"])
    by_client = {}
    for rec in res.records:
        by_client.setdefault(rec.client, []).append(rec.client_blocks)
    assert 3 in by_client and all(b == 0 for b in by_client[3])
    assert any(b > 0 for c, bs in by_client.items() for b in bs)
    with pytest.raises(ScenarioError, match="memory_fraction"):
        GeoSplitter("dp", memory_fraction=0)


def test_split_lowers_server_block_work_against_no_split():
    base = simulate("splitllm-edge", "even", "shortest", seed=0, overrides=OVR)
    split = simulate("splitllm-edge", "even", "shortest", seed=0, overrides=OVR, splitter=GeoSplitter("dp"))
    server_blocks = lambda res: sum(sum(h.blocks for h in r.route.hops) for r in res.records)  # noqa: E731
    assert server_blocks(split) < server_blocks(base)
    assert server_blocks(base) == 24 * base.instance.num_blocks


@pytest.mark.skipif(not is_available(ROUTING_POLICIES["ws-rr"]), reason="ws-rr not available")
def test_geo_splitter_with_ws_rr():
    sp = GeoSplitter("dp")
    res = simulate("splitllm-wan", "even", "ws-rr", seed=0, overrides=OVR, splitter=sp)
    inst = res.instance
    assert res.summary["num_rejected"] == 0
    assert any(r.client_blocks > 0 for r in res.records)
    for rec, (_, _, part) in zip(res.records, sp.history):
        assert rec.route.hops[0].first_block == rec.client_blocks == part.blocks
        assert rec.completion_s - rec.start_s == pytest.approx(_expected_hold_s(inst, rec, part), rel=1e-9)

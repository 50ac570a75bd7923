"""Planning lengths under unknown output lengths (issue 11; docs/contracts.md §3 "Planning lengths",
docs/model.md §6.4): a planner that sees only declared lengths plans for the longest DECLARED output
(max_length − the shortest admitted prompt) and sizes K/V for max_length tokens per session."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.cg_bp import lone_request_time_s, sessions_rule
from distllm_env import build_instance
from distllm_env.lengths import LengthDist, PlanningLengths, planning_lengths, planning_maxima
from distllm_env.scenario import load_scenario
from distllm_env.traces import load_trace, trace_window


def test_hand_computed_planning_lengths():
    p, o = LengthDist("uniform", low=10, high=100), LengthDist("fixed", value=5000)
    # known lengths, truncate: the longest output is cut to fit after the shortest prompt
    assert planning_lengths(p, o, 2048, "truncate") == PlanningLengths(100, 2038, 2048)
    # unknown lengths: declared output of the shortest prompt; every session reserves max_length
    assert planning_lengths(p, o, 2048, output_tokens_known=False, max_length=1000) == PlanningLengths(100, 990, 1000)
    # arrays (a trace window): the third request is rejected (prompt ≥ max_length), the longest declared
    # output is 1000 − 30, the longest session is max_length
    prompts, outputs = np.array([30, 700, 1000]), np.array([5, 9000, 1])
    assert planning_lengths(prompts, outputs, 2048, output_tokens_known=False,
                            max_length=1000) == PlanningLengths(700, 970, 1000)
    # known lengths, reject: only admitted requests; the longest session is one request's own sum
    assert planning_lengths(np.array([30, 2000, 1500]), np.array([900, 100, 400]), 2048) == PlanningLengths(1500, 900, 1900)
    assert planning_maxima(prompts, outputs, 2048, output_tokens_known=False, max_length=1000) == (700, 970)


@pytest.mark.parametrize("name", ["azure-conv-swarm", "azure-code-swarm", "azure-conv-serial"])
def test_azure_preset_plans_for_the_longest_declared_output(name):
    sc = load_scenario(name)
    wl = sc.workload
    max_length = wl.max_length or sc.model.max_sequence_tokens
    tr = load_trace(wl.trace)
    a, b = trace_window(tr, wl.trace_offset_requests, wl.trace_offset_s, wl.num_requests)
    prompts = tr.prompt_tokens[a:b]
    admitted = prompts[prompts < max_length]                  # a prompt ≥ max_length is rejected
    assert sc.max_output_tokens == max_length - admitted.min()    # not max_length − the longest prompt
    assert sc.max_output_tokens > 3000                        # the trace's sessions may run ~4,000 tokens
    assert sc.max_prompt_tokens == admitted.max()
    assert sc.max_session_tokens == max_length
    inst = build_instance(sc, seed=0)
    assert inst.kv_block_bytes == sc.model.kv_bytes_per_block(max_length, 0)


def test_cg_bp_t1_plans_a_lone_session_to_its_declared_length():
    """T₁ under unknown lengths equals T₁ of the same swarm with KNOWN lengths fixed at the shortest
    prompt and its declared output (an independent path to the same probe and the same s_c)."""
    unknown = load_scenario("tiny", overrides=["workload.output_tokens_known=false", "workload.max_length=512",
                                               "workload.prompt_tokens={dist: uniform, low: 10, high: 20}"])
    known = load_scenario("tiny", overrides=["workload.prompt_tokens=10", "workload.output_tokens=502"])
    assert unknown.planning_lengths() == PlanningLengths(20, 502, 512)
    assert known.planning_lengths() == PlanningLengths(10, 502, 512)
    iu, ik = build_instance(unknown, seed=0), build_instance(known, seed=0)
    assert iu.kv_block_bytes == ik.kv_block_bytes
    t1 = lone_request_time_s(iu)
    assert t1 == pytest.approx(lone_request_time_s(ik), rel=1e-12)
    assert sessions_rule(iu).t1_s == pytest.approx(t1, rel=1e-12)
    # a lone 502-token session on tiny: at least 502 decode steps of 8 blocks × 2 ms plus 10 ms overhead
    assert t1 > 502 * (8 * 0.002 + 0.010)
    # the old planning (max_length − longest prompt = 492 tokens) would be shorter
    shorter = load_scenario("tiny", overrides=["workload.prompt_tokens=20", "workload.output_tokens=492"])
    assert lone_request_time_s(build_instance(shorter, seed=0)) < t1


@pytest.mark.parametrize("name", ["azure-conv-swarm", "azure-code-swarm", "azure-conv-serial"])
def test_azure_presets_set_cg_bp_sessions_explicitly(name):
    """The rule's |R| under declared lengths is in the hundreds; the presets state |R| instead
    (docs/scenarios.md "Server models and loaded presets")."""
    sc = load_scenario(name)
    assert sc.policy_defaults.options["cg-bp"]["sessions"] == 16

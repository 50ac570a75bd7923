"""Over-length handling and unknown output lengths (docs/scenarios.md, "Workload: …"):
one check (``admit_lengths``) for every way a length enters, planning maxima over admitted requests."""

from __future__ import annotations

import numpy as np
import pytest

from distllm_env import build_instance, generate_requests, load_scenario, simulate
from distllm_env.errors import ScenarioError
from distllm_env.lengths import EXCEEDS_MAX_SEQUENCE, admit_lengths, planning_maxima
from distllm_env.workload import Request


def test_request_new_fields_default_to_known_lengths():
    r = Request(id=0, client=0, arrival_s=0.0, prompt_tokens=3, output_tokens=4)
    assert (r.declared_output_tokens, r.output_tokens_known, r.rejection, r.truncated) == (4, True, None, False)
    r2 = Request(id=1, client=0, arrival_s=0.0, prompt_tokens=3, output_tokens=4, declared_output_tokens=9,
                 output_tokens_known=False)
    assert r2.declared_output_tokens == 9 and isinstance(r2.declared_output_tokens, int)


def test_admit_lengths_known_reject_and_truncate_hand_computed():
    p = np.array([3000, 2000, 2047, 2048, 100])
    o = np.array([32, 100, 1, 1, 1948])
    rej = admit_lengths(p, o, 2048, "reject")
    assert rej.rejected.tolist() == [True, True, False, True, False]
    assert rej.truncated.tolist() == [False] * 5
    assert rej.output_tokens.tolist() == o.tolist()
    tr = admit_lengths(p, o, 2048, "truncate")
    assert tr.rejected.tolist() == [True, False, False, True, False]   # prompts ≥ 2048 never fit
    assert tr.truncated.tolist() == [False, True, False, False, False]
    assert tr.output_tokens.tolist() == [32, 48, 1, 1, 1948]
    assert tr.declared_output_tokens.tolist() == tr.output_tokens.tolist()
    tr2 = admit_lengths(np.array([2000]), np.array([100]), 2048, "truncate")
    assert tr2.output_tokens.tolist() == [48] and tr2.truncated.tolist() == [True]


def test_admit_lengths_unknown_declares_max_length_minus_prompt():
    p = np.array([100, 1000, 1024, 1500])
    o = np.array([50, 30, 5, 1])
    a = admit_lengths(p, o, 2048, "reject", output_tokens_known=False, max_length=1024)
    assert a.rejected.tolist() == [False, False, True, True]
    assert a.declared_output_tokens.tolist() == [924, 24, 0, 0]
    assert a.truncated.tolist() == [False, True, False, False]     # 1000 + 30 > 1024: stops at max_length
    assert a.output_tokens.tolist() == [50, 24, 5, 1]
    adm = a.admitted
    assert np.all(p[adm] + a.output_tokens[adm] <= 1024)
    assert np.all(a.output_tokens[adm] <= a.declared_output_tokens[adm])


def test_csv_trace_over_length_is_rejected_and_does_not_enlarge_planning(tmp_path, tiny_dict):
    """The bug of issue 11: 3,000 + 32 tokens on a 2,048-token model was simulated as completed and
    enlarged the KV size CG-BP plans for."""
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("arrival_s,prompt_tokens,output_tokens\n0,20,32\n1,3000,32\n2,100,16\n")
    tiny_dict["workload"] = {"arrival": "trace", "trace": str(csv_path)}
    sc = load_scenario(tiny_dict)
    reqs = generate_requests(build_instance(sc, seed=0), seed=0)
    assert [r.rejection for r in reqs] == [None, EXCEEDS_MAX_SEQUENCE, None]
    assert (sc.max_prompt_tokens, sc.max_output_tokens) == (100, 32)
    tiny_dict["workload"]["over_length"] = "truncate"
    reqs = generate_requests(build_instance(load_scenario(tiny_dict), seed=0), seed=0)
    assert [r.rejection for r in reqs] == [None, EXCEEDS_MAX_SEQUENCE, None]   # the prompt alone is too long
    csv_path.write_text("arrival_s,prompt_tokens,output_tokens\n0,20,32\n1,2000,100\n")
    from distllm_env.traces import load_trace

    load_trace.cache_clear()
    sc = load_scenario(tiny_dict)
    reqs = generate_requests(build_instance(sc, seed=0), seed=0)
    assert [(r.rejection, r.truncated, r.output_tokens) for r in reqs] == [(None, False, 32), (None, True, 48)]
    assert (sc.max_prompt_tokens, sc.max_output_tokens) == (2000, 48)


def _tiny_trace(name: str, n: int, *extra: str):
    return load_scenario("tiny", overrides=["workload.arrival=trace", f"workload.trace={name}",
                                            f"workload.num_requests={n}", "workload.prompt_tokens=",
                                            "workload.output_tokens=", *extra])


@pytest.mark.parametrize("mode", ["reject", "truncate"])
def test_azure_trace_lengths_go_through_the_check(mode):
    sc = _tiny_trace("azure-conv-2023", 400, f"workload.over_length={mode}")
    reqs = generate_requests(build_instance(sc, seed=0), seed=0)
    from distllm_env.traces import load_trace

    tr = load_trace("azure-conv-2023")
    p, o = tr.prompt_tokens[:400], tr.output_tokens[:400]
    over = p + o > 2048
    assert over.any()                                          # the window holds over-length requests
    rejected = np.array([r.rejection is not None for r in reqs])
    truncated = np.array([r.truncated for r in reqs])
    if mode == "reject":
        assert np.array_equal(rejected, over) and not truncated.any()
    else:
        assert np.array_equal(rejected, p >= 2048)
        assert np.array_equal(truncated, over & (p < 2048))
    for r in reqs:
        if r.rejection is None:
            assert r.prompt_tokens + r.output_tokens <= 2048
    admitted = [r for r in reqs if r.rejection is None]
    assert sc.max_prompt_tokens == max(r.prompt_tokens for r in admitted)
    assert sc.max_output_tokens == max(r.output_tokens for r in admitted)


def test_set_override_lengths_go_through_the_check():
    # a --set length distribution over the maximum is a config error, unless truncate says how to cut it
    with pytest.raises(ScenarioError) as info:
        load_scenario("tiny", overrides=["workload.output_tokens=3000"])
    assert info.value.path == "workload.output_tokens"
    sc = load_scenario("tiny", overrides=["workload.output_tokens=3000", "workload.over_length=truncate"])
    reqs = generate_requests(build_instance(sc, seed=0), seed=0)
    assert all(r.truncated and r.output_tokens == 2048 - 20 and r.rejection is None for r in reqs)
    assert (sc.max_prompt_tokens, sc.max_output_tokens) == (20, 2028)
    with pytest.raises(ScenarioError) as info:
        load_scenario("tiny", overrides=["workload.prompt_tokens=2048", "workload.over_length=truncate"])
    assert info.value.path == "workload.prompt_tokens"


def test_unknown_lengths_declare_max_length():
    sc = load_scenario("tiny", overrides=["workload.output_tokens_known=false", "workload.max_length=512",
                                          "workload.output_tokens={dist: uniform, low: 400, high: 600}"])
    reqs = generate_requests(build_instance(sc, seed=0), seed=0)
    assert all(r.declared_output_tokens == 512 - 20 and not r.output_tokens_known for r in reqs)
    assert all(r.output_tokens <= r.declared_output_tokens for r in reqs)
    assert any(r.truncated for r in reqs) and any(not r.truncated for r in reqs)
    assert all(r.output_tokens == 492 for r in reqs if r.truncated)
    assert (sc.max_prompt_tokens, sc.max_output_tokens) == (20, 492)     # plans for max_length
    default = load_scenario("tiny", overrides=["workload.output_tokens_known=false"])
    assert generate_requests(build_instance(default, 0), 0)[0].declared_output_tokens == 2048 - 20


@pytest.mark.parametrize("override,path", [
    ("workload.max_length=512", "workload.max_length"),                 # only with unknown lengths
    ("workload.over_length=drop", "workload.over_length"),
])
def test_bad_length_fields_name_the_field(override, path):
    with pytest.raises(ScenarioError) as info:
        load_scenario("tiny", overrides=[override])
    assert info.value.path == path


def test_max_length_above_model_maximum_is_refused():
    with pytest.raises(ScenarioError) as info:
        load_scenario("tiny", overrides=["workload.output_tokens_known=false", "workload.max_length=4096"])
    assert info.value.path == "workload.max_length" and "2048" in str(info.value)


def test_planning_maxima_for_distributions():
    from distllm_env.lengths import LengthDist

    p, o = LengthDist("uniform", low=10, high=100), LengthDist("fixed", value=5000)
    assert planning_maxima(p, o, 2048, "truncate") == (100, 2038)
    # unknown lengths: the longest DECLARED output, max_length − the shortest prompt (issue 11)
    assert planning_maxima(p, o, 2048, "reject", output_tokens_known=False, max_length=1000) == (100, 990)


def test_over_length_requests_are_rejected_end_to_end():
    """Needs the engines' part (Request.rejection honoured): rejected at arrival, never routed,
    reason exceeds_max_sequence; truncated ones counted in the summary."""
    sc = _tiny_trace("azure-code-2023", 120)
    reqs = generate_requests(build_instance(sc, seed=0), seed=0)
    expect = {r.id for r in reqs if r.rejection is not None}
    assert expect
    res = simulate(sc, seed=0)
    rows = res.records
    assert {r.request_id for r in rows if r.reason == "exceeds_max_sequence"} == expect
    assert all(r.status == "rejected" and r.route is None for r in rows if r.request_id in expect)
    assert res.summary["rejected_reasons"].get("exceeds_max_sequence") == len(expect)
    assert len(rows) == len(reqs)                               # every request accounted for once


def test_truncated_requests_are_counted_end_to_end():
    """Needs the engines to carry ``Request.truncated`` into the per-request record."""
    res_t = simulate(_tiny_trace("azure-code-2023", 120, "workload.over_length=truncate"), seed=0)
    assert res_t.summary["num_truncated"] == sum(r.truncated for r in generate_requests(
        build_instance(_tiny_trace("azure-code-2023", 120, "workload.over_length=truncate"), 0), 0))

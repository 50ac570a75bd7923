"""Bounded scenario fuzzing (issue 9): mutated scenarios from every preset end in success or a one-line
DistLLMError, never in a traceback, a hang, a memory blow-up, a silent fix-up or a file written by the
scenario.  The engine is tests/fuzzing.py, the runner tests/fuzz_runner.py; benchmarks/fuzz.py is the
long run."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
import yaml

import distllm_env
from distllm_env.errors import ScenarioError
from distllm_env.scenario import list_presets, preset_path
from fuzz_runner import OK_OUTCOMES, run_cases, summarize
from fuzzing import MARKER, MUTATIONS, Case, Mutation, make_case, make_cases

CI_SEED = 9
CI_CASES = 320            # ≥ 300 (issue 9); the presets take turns, so every preset gets ≥ 24
CI_TIMEOUT_S = 20.0       # per case; a correct case takes ~0.1 s (generous: a loaded CI machine must not flake)
CI_MEM_BYTES = 2 << 30


def _plain_case(preset: str = "tiny", **kw) -> Case:
    data = yaml.safe_load(preset_path(preset).read_text())
    data["workload"]["num_requests"] = 5
    return Case(seed=0, index=0, preset=preset, data=yaml.safe_dump(data).encode(), **kw)


def test_cases_are_deterministic_and_cover_every_preset_and_kind():
    cases = make_cases(CI_SEED, CI_CASES)
    assert {c.preset for c in cases} == set(list_presets())
    assert {m.kind for c in cases for m in c.mutations} == set(MUTATIONS)
    assert all(1 <= len(c.mutations) <= 3 for c in cases)
    again = make_case(CI_SEED, 123)
    assert (again.data, again.overrides, again.mutations) == (cases[123].data, cases[123].overrides,
                                                              cases[123].mutations)
    assert sum(make_case(CI_SEED + 1, i).data != cases[i].data for i in range(20)) >= 15
    # the security payloads are there, and only a file under the case's own folder is targeted
    assert any(c.security for c in cases)
    for c in cases:
        if c.security:
            assert MARKER.encode() in c.data or any(MARKER in o for o in c.overrides)


def test_cases_that_should_succeed_stay_small():
    for c in make_cases(CI_SEED, 200):
        if any(m.kind == "workload" and "num-huge" in m.detail for m in c.mutations):
            continue
        if any("num_requests" in m.path or "num_requests" in m.detail for m in c.mutations):
            continue
        try:
            data = yaml.safe_load(c.data)
        except Exception:  # noqa: BLE001 - text-level mutations
            continue
        w = data.get("workload") if isinstance(data, dict) else None
        if isinstance(w, dict) and isinstance(w.get("num_requests"), int):
            assert w["num_requests"] <= 20


def test_runner_classifies_every_outcome(monkeypatch):
    """The classifier itself, with the simulator replaced (the fork inherits the patch)."""
    real = distllm_env.simulate
    marker_cases = {}

    def fake_simulate(sc, placement=None, routing=None, seed=0):
        mode = sc.description
        if mode == "write-marker":
            open(os.path.join(os.getcwd(), "marker"), "w").close()
        elif mode == "hang":
            time.sleep(30)
        elif mode == "allocate":
            return np.ones(8 << 30, dtype=np.uint8)
        elif mode == "crash-type":
            raise KeyError("boom")
        elif mode == "messy":
            raise ScenarioError("x", "line one\nline two")
        elif mode == "warn":
            np.log(np.zeros(1))
        return real(sc, placement, routing, seed=seed)

    monkeypatch.setattr(distllm_env, "simulate", fake_simulate)
    cases = []
    for i, mode in enumerate(["ok", "write-marker", "hang", "allocate", "crash-type", "messy", "warn"]):
        data = yaml.safe_load(preset_path("tiny").read_text())
        data["workload"]["num_requests"] = 5
        data["description"] = mode
        cases.append(Case(seed=0, index=i, preset="tiny", data=yaml.safe_dump(data).encode()))
        marker_cases[i] = mode
    bad = _plain_case()
    bad.data += b"\nfuzz_unknown_key: 1\n"
    bad.index = len(cases)
    cases.append(bad)
    marker_cases[bad.index] = "unknown-key"
    accepted = _plain_case(must_fail=True)
    accepted.index = len(cases)
    cases.append(accepted)
    marker_cases[accepted.index] = "must-fail"
    refused = _plain_case(mutations=[Mutation("equivalent", "<text>", " comments added", keeps_valid=True)])
    refused.data += b"\nfuzz_unknown_key: 1\n"
    refused.index = len(cases)
    cases.append(refused)
    marker_cases[refused.index] = "must-succeed"
    got = {marker_cases[c.index]: r["outcome"] for c, r in run_cases(cases, jobs=2, timeout_s=3.0,
                                                                      mem_bytes=1 << 30)}
    assert got == {"ok": "success", "write-marker": "security", "hang": "timeout", "allocate": "memory",
                   "crash-type": "uncaught", "messy": "messy-error", "warn": "warning",
                   "unknown-key": "clean", "must-fail": "silent-accept", "must-succeed": "wrongly-refused"}


def test_runner_checks_result_invariants(monkeypatch):
    """A 'successful' run whose result records a completed request at t = inf is a failure."""
    real = distllm_env.simulate

    def inf_simulate(sc, placement=None, routing=None, seed=0):
        res = real(sc, placement, routing, seed=seed)
        r = res.records[0]
        object.__setattr__(r, "completion_s", math.inf)
        return res

    monkeypatch.setattr(distllm_env, "simulate", inf_simulate)
    [(_, result)] = list(run_cases([_plain_case()], jobs=1, timeout_s=5.0))
    assert result["outcome"] == "invalid-result", result
    assert "non-finite" in result["message"]


def test_bounded_fuzz_every_outcome_is_success_or_a_one_line_error():
    cases = make_cases(CI_SEED, CI_CASES)
    jobs = max(1, min(2, os.cpu_count() or 1))
    pairs = list(run_cases(cases, jobs=jobs, timeout_s=CI_TIMEOUT_S, mem_bytes=CI_MEM_BYTES))
    assert len(pairs) == CI_CASES
    failures = [(c, r) for c, r in pairs if r["outcome"] not in OK_OUTCOMES]
    # the fuzzer must keep exercising the simulator, not only the validators
    assert sum(r["outcome"] == "success" for _, r in pairs) >= 0.05 * CI_CASES, summarize(pairs)
    if failures:
        pytest.fail(f"{len(failures)} of {CI_CASES} fuzz cases failed (reproduce one with "
                    f"tests/fuzzing.make_case({CI_SEED}, index), or all with benchmarks/fuzz.py --seed {CI_SEED} "
                    f"--cases {CI_CASES}):\n" + summarize(pairs), pytrace=False)

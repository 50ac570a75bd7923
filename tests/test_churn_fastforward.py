"""The churn engine's fast-forward (distllm_env/live/fastforward.py) changes no record: runs with it
equal, byte for byte, the runs that step every step as an event (``ChurnSimulation._fast_forward =
False``), under random churn (fail / leave, reloads, rebalancing, online re-placement, scarce memory),
for the ``serial`` and ``independent`` server models; and the internal masked placement equals the
validated one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distllm_env import simulate
from distllm_env.live.churn import ChurnSimulation
from distllm_env.placement import Placement

from live_helpers import tiny_spec

CASES = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "server_model": st.sampled_from(["independent", "serial"]),
    "distribution": st.sampled_from(["exponential", "weibull", "pareto"]),
    "up": st.floats(0.5, 30.0),
    "down": st.floats(0.2, 10.0),
    "down_event": st.sampled_from(["fail", "leave"]),
    "policies": st.sampled_from([("even", "shortest"), ("even", "petals"), ("cg-bp", "ws-rr")]),
    "memory_gb": st.sampled_from([None, 0.1027]),
    "rate": st.sampled_from([1.0, 4.0, 20.0]),
    "reload": st.booleans(),
})


def churn_run(case, fast: bool, monkeypatch) -> list[str]:
    # CG-BP (online hook: place_joining) hosts nothing on the scarce-memory GPU: it gets the default
    memory = case["memory_gb"] if case["policies"][0] == "even" else None
    spec = tiny_spec(memory_gb=memory, server_model=case["server_model"])
    spec["workload"] = {**spec["workload"], "num_requests": 25, "arrival_rate_per_s": case["rate"]}
    spec["churn"] = {"distribution": case["distribution"], "mean_uptime_s": case["up"],
                     "mean_downtime_s": case["down"], "down_event": case["down_event"], "idle_timeout_s": 20}
    if case["reload"]:
        spec["churn"]["load_bandwidth_gbps"] = 0.5
        spec["churn"]["rebalance"] = {"balance_quality": 0.75, "period_s": 5.0}
    monkeypatch.setattr(ChurnSimulation, "_fast_forward", fast)
    res = simulate(spec, *case["policies"], seed=case["seed"])
    return [repr(r) for r in res.records]


@settings(max_examples=20, deadline=None)
@given(CASES)
def test_fast_forward_changes_no_record(case):
    with pytest.MonkeyPatch.context() as mp:
        reference = churn_run(case, False, mp)
    with pytest.MonkeyPatch.context() as mp:
        fast = churn_run(case, True, mp)
    assert fast == reference


def test_masked_placement_equals_the_validated_one():
    p = Placement(starts=(0, 4, 4, 0), counts=(4, 4, 4, 4), num_blocks=8)
    m = Placement._masked(p, (4, 0, 4, 0))
    assert m == Placement((0, 4, 4, 0), (4, 0, 4, 0), 8)
    assert m.count_array.tolist() == [4, 0, 4, 0] and m.end_array.tolist() == [4, 4, 8, 0]

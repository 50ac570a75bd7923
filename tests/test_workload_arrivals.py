"""Bursty arrivals (``arrival: gamma | mmpp``), trace windows and ``time_scale`` (docs/scenarios.md,
"Workload: …").  Statistical checks use fixed seeds and generous tolerances on large samples."""

from __future__ import annotations

import numpy as np
import pytest

from distllm_env import build_instance, generate_requests, load_scenario
from distllm_env.arrivals import gamma_arrivals, mmpp_arrivals, mmpp_stationary_rate, poisson_arrivals
from distllm_env.errors import ScenarioError
from distllm_env.traces import load_trace


def _rate_cv(a: np.ndarray) -> tuple[float, float]:
    g = np.diff(a)
    return (len(a) - 1) / a[-1], float(g.std() / g.mean())


@pytest.mark.parametrize("rate,cv", [(2.0, 0.5), (5.53, 1.09), (2.57, 4.0)])
def test_gamma_mean_rate_and_cv(rate, cv):
    a = gamma_arrivals(np.random.default_rng(7), rate, cv, 200_000)
    assert a[0] == 0.0 and np.all(np.diff(a) >= 0)
    r, c = _rate_cv(a)
    assert r == pytest.approx(rate, rel=0.05)
    assert c == pytest.approx(cv, rel=0.08)


def test_gamma_with_cv_1_has_poisson_statistics():
    r, c = _rate_cv(gamma_arrivals(np.random.default_rng(3), 1.5, 1.0, 100_000))
    r2, c2 = _rate_cv(poisson_arrivals(np.random.default_rng(3), 1.5, 100_000))
    assert r == pytest.approx(r2, rel=0.03) and c == pytest.approx(c2, rel=0.03) and c == pytest.approx(1, rel=0.03)


def test_mmpp_long_run_rate_is_the_stationary_mix():
    rates, soj = (0.5, 6.0), (20.0, 5.0)
    expect = (20 * 0.5 + 5 * 6.0) / 25                      # π0 λ0 + π1 λ1 = 1.6 req/s
    assert mmpp_stationary_rate(rates, soj) == pytest.approx(expect)
    a = mmpp_arrivals(np.random.default_rng(11), rates, soj, 200_000)
    assert a[0] == 0.0 and np.all(np.diff(a) >= 0) and len(a) == 200_000
    r, c = _rate_cv(a)
    assert r == pytest.approx(expect, rel=0.05)
    assert c > 1.3                                           # modulation makes the gaps over-dispersed


def test_mmpp_equal_states_is_poisson():
    r, c = _rate_cv(mmpp_arrivals(np.random.default_rng(5), (2.0, 2.0), (1.0, 3.0), 100_000))
    assert r == pytest.approx(2.0, rel=0.03) and c == pytest.approx(1.0, rel=0.03)


def test_documented_code_trace_mmpp_matches_its_cv():
    r, c = _rate_cv(mmpp_arrivals(np.random.default_rng(0), (0.0, 5.7), (60.0, 49.0), 200_000))
    assert r == pytest.approx(2.57, rel=0.1) and 10 < c < 16      # the trace: 2.57 req/s, CV 13.15


@pytest.mark.parametrize("arrival", [
    ["workload.arrival=gamma", "workload.cv=3"],
    ["workload.arrival=mmpp", "workload.rates_per_s=[0.1, 5]", "workload.mean_sojourn_s=[10, 2]",
     "workload.arrival_rate_per_s="],
])
def test_bursty_arrivals_are_deterministic_per_seed(arrival):
    sc = load_scenario("tiny", overrides=arrival)
    inst = build_instance(sc, 0)
    a = [r.arrival_s for r in generate_requests(inst, 4)]
    assert a == [r.arrival_s for r in generate_requests(inst, 4)]
    assert a != [r.arrival_s for r in generate_requests(inst, 5)]
    assert a[0] == 0.0 and len(a) == 30 and all(np.diff(a) >= 0)


def test_poisson_draws_unchanged_by_the_new_fields():
    """time_scale 1 and the default fields leave the published Poisson draws as they were."""
    sc = load_scenario("tiny")
    a = np.array([r.arrival_s for r in generate_requests(build_instance(sc, 0), 0)])
    from distllm_env.rng import generators, seed_streams

    rng = generators(seed_streams(0)["workload"], 3)[0]
    gaps = rng.exponential(1 / 2.0, size=30)
    gaps[0] = 0
    assert np.array_equal(a, np.cumsum(gaps))
    fast = load_scenario("tiny", overrides=["workload.time_scale=4"])
    b = np.array([r.arrival_s for r in generate_requests(build_instance(fast, 0), 0)])
    assert np.allclose(b, a / 4, rtol=0, atol=1e-12)


@pytest.mark.parametrize("overrides,path", [
    (["workload.arrival=gamma"], "workload.cv"),
    (["workload.arrival=gamma", "workload.cv=0"], "workload.cv"),
    (["workload.cv=2"], "workload.cv"),
    (["workload.arrival=mmpp", "workload.arrival_rate_per_s=", "workload.rates_per_s=[1]",
      "workload.mean_sojourn_s=[1, 1]"], "workload.rates_per_s"),
    (["workload.arrival=mmpp", "workload.arrival_rate_per_s=", "workload.rates_per_s=[0, 0]",
      "workload.mean_sojourn_s=[1, 1]"], "workload.rates_per_s"),
    (["workload.arrival=mmpp", "workload.arrival_rate_per_s=", "workload.rates_per_s=[1, 2]",
      "workload.mean_sojourn_s=[0, 1]"], "workload.mean_sojourn_s.0"),
    (["workload.arrival=mmpp", "workload.arrival_rate_per_s=", "workload.rates_per_s=[1e-9, 1e-9]",
      "workload.mean_sojourn_s=[1e-6, 1e-6]"], "workload.rates_per_s"),
    (["workload.arrival=mmpp", "workload.rates_per_s=[1, 2]", "workload.mean_sojourn_s=[1, 1]"],
     "workload.arrival_rate_per_s"),
    (["workload.time_scale=0"], "workload.time_scale"),
    (["workload.trace_offset={requests: 3}"], "workload.trace_offset"),
])
def test_bad_arrival_fields_name_the_field(overrides, path):
    with pytest.raises(ScenarioError) as info:
        load_scenario("tiny", overrides=overrides)
    assert info.value.path == path


def _azure(*extra: str):
    return load_scenario("tiny", overrides=["workload.arrival=trace", "workload.trace=azure-conv-2023",
                                            "workload.prompt_tokens=", "workload.output_tokens=",
                                            "workload.over_length=truncate", *extra])


def test_trace_window_by_requests_restarts_at_zero_and_scales():
    tr = load_trace("azure-conv-2023")
    sc = _azure("workload.trace_offset={requests: 100}", "workload.num_requests=50", "workload.time_scale=2")
    reqs = generate_requests(build_instance(sc, 0), 0)
    assert len(reqs) == 50
    a = np.array([r.arrival_s for r in reqs])
    assert np.allclose(a, (tr.arrival_s[100:150] - tr.arrival_s[100]) / 2, rtol=0, atol=1e-9)
    assert [r.prompt_tokens for r in reqs] == tr.prompt_tokens[100:150].tolist()


def test_trace_window_by_seconds():
    tr = load_trace("azure-conv-2023")
    sc = _azure("workload.trace_offset={seconds: 600}", "workload.num_requests=10")
    reqs = generate_requests(build_instance(sc, 0), 0)
    first = int(np.searchsorted(tr.arrival_s, 600.0))
    assert tr.arrival_s[first] >= 600 > tr.arrival_s[first - 1]
    assert reqs[0].arrival_s == 0.0
    assert [r.prompt_tokens for r in reqs] == tr.prompt_tokens[first:first + 10].tolist()


@pytest.mark.parametrize("extra,path", [
    (["workload.trace_offset={requests: 19366}"], "workload.trace_offset"),
    (["workload.trace_offset={requests: 19000}", "workload.num_requests=400"], "workload.num_requests"),
    (["workload.trace_offset={requests: 1, seconds: 2}"], "workload.trace_offset"),
    (["workload.trace_offset={minutes: 2}"], "workload.trace_offset"),
    (["workload.prompt_tokens=20"], "workload.prompt_tokens"),
])
def test_bad_trace_windows_name_the_field(extra, path):
    with pytest.raises(ScenarioError) as info:
        _azure(*extra)
    assert info.value.path.startswith(path)

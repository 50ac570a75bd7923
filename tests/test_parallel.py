"""Seeds in parallel (issue 13 item 6; distllm_env.parallel): ``--workers N`` and ``--backend ray`` give
exactly the serial run's rows, in the same order, with the same numbers (wall-clock algorithm times
aside), for compare, evaluate and reproduce."""

from __future__ import annotations

import json
import math
import sys
import warnings

import pytest

from distllm_env.compare import compare
from distllm_env.errors import ScenarioError
from distllm_env.parallel import ParallelFallbackWarning, map_seeds

POLICIES = ["proposed", "even+shortest", "cg-bp+round-robin"]
SEEDS = [0, 1, 2, 3]


def _no_timing(rows):
    """Rows without the wall-clock column (the only value a rerun may change)."""
    return [{k: v for k, v in r.items() if k != "algorithm_time_s"} for r in rows]


def _same(a, b) -> bool:
    """Equal, NaN == NaN (a NaN metric of a run without completions is still the same result)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _assert_same_compare(a, b) -> None:
    assert [p.label for p in a.policies] == [p.label for p in b.policies]
    assert _same(_no_timing(a.per_seed), _no_timing(b.per_seed))
    assert _same(_no_timing(a.results), _no_timing(b.results))
    assert _same(a.meta, b.meta)
    assert list(a.runs) == list(b.runs)
    for key in a.runs:      # per-request records identical, not only the means
        assert a.runs[key].rows() == b.runs[key].rows(), key
        assert _same(a.runs[key].summary, b.runs[key].summary)


def test_compare_workers_2_equals_serial_api():
    serial = compare("tiny", POLICIES, SEEDS)
    par = compare("tiny", POLICIES, SEEDS, workers=2)
    _assert_same_compare(serial, par)
    assert [(r["policy"], r["seed"]) for r in par.per_seed] == [(p, s) for p in POLICIES for s in SEEDS]
    # every request accounted for exactly once in every parallel run
    for (label, seed), res in par.runs.items():
        assert sorted(r.request_id for r in res.records) == list(range(len(res.records)))


def test_compare_cli_workers_2_json_equals_serial(capsys):
    from distllm_env.cli import main

    argv = ["compare", "--scenario", "paper-clustered", "--policies", "petals,proposed", "--seeds", "3",
            "--set", "workload.num_requests=30", "--format", "json"]
    assert main(argv) == 0
    serial = json.loads(capsys.readouterr().out)
    assert main(argv + ["--workers", "2"]) == 0
    par = json.loads(capsys.readouterr().out)
    assert _same(_no_timing(par["per_seed"]), _no_timing(serial["per_seed"]))
    assert _same(_no_timing(par["results"]), _no_timing(serial["results"]))
    assert par["meta"] == serial["meta"]
    assert len(par["per_seed"]) == 6 and par["results"][0]["mean_per_token_time_s"] > 0


def test_evaluate_workers_2_equals_serial():
    from distllm_env.agents.evaluate import evaluate

    kw = dict(policy="distllm_env.baselines.ws_rr:WSRRRouter", scenario="paper-clustered", seeds=[10_000, 10_001, 10_002],
              overrides=["workload.num_requests=30"], policies=["shortest", "petals"])
    serial, par = evaluate(**kw), evaluate(**kw, workers=2)
    _assert_same_compare(serial.compare, par.compare)
    assert par.margins == serial.margins and par.policy_label == serial.policy_label


def test_reproduce_table6_workers_2_equals_serial():
    from distllm_env import reproduce as rp

    ov = ["workload.num_requests=20"]
    serial = rp.table6([0, 1], overrides=ov)
    par = rp.table6([0, 1], overrides=ov, parallel={"workers": 2})
    assert _same(par, serial)       # no wall-clock value in table6: every number identical
    assert len(par["rows"]) == 12 and all(r["petals_s"] > 0 for r in par["rows"])


def test_reproduce_cells_equal_compare_on_the_preset_name():
    """Workers get resolved Scenario objects; the cell is the same as compare() on the name + overrides."""
    from distllm_env import reproduce as rp

    ov = ["workload.num_requests=20", "workload.output_tokens=64"]
    (cell,) = rp._run_cells([("paper-gtsce", ov)], [0, 1], None)
    _assert_same_compare(compare("paper-gtsce", list(rp.POLICIES), [0, 1], ov), cell)


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise ScenarioError("items.3", "three is refused")
    return x * x


def test_map_seeds_order_and_worker_errors():
    assert map_seeds(_square_or_fail, [5, 1, 4, 2], workers=2) == [25, 1, 16, 4]
    with pytest.raises(ScenarioError) as info:       # the library's error, path and all, from a worker
        map_seeds(_square_or_fail, [1, 3, 2], workers=2)
    assert info.value.path == "items.3" and str(info.value) == "items.3: three is refused"


class _Unpicklable:
    """A routing policy holding a lambda: cannot be sent to a worker process."""

    def __init__(self):
        from distllm_env.baselines.simple import ShortestRouter

        self._inner = ShortestRouter()
        self.key = lambda r: r       # noqa: E731

    def route(self, request, view, rng):
        return self._inner.route(request, view, rng)


def test_unpicklable_policy_falls_back_to_serial_with_a_warning():
    serial = compare("tiny", [_Unpicklable(), "proposed"], [0, 1])
    with pytest.warns(ParallelFallbackWarning, match="running serially instead of on 2 workers: .*pickled"):
        par = compare("tiny", [_Unpicklable(), "proposed"], [0, 1], workers=2)
    _assert_same_compare(serial, par)


def test_main_module_class_is_detected():
    from distllm_env.parallel import _unpicklable_reason

    Main = type("Main", (), {"__module__": "__main__"})
    assert "defined in __main__" in _unpicklable_reason([("x", Main(), 1)])
    assert _unpicklable_reason([("x", 1, [2])]) is None


def test_bad_parallel_arguments(monkeypatch, capsys):
    from distllm_env.cli import main

    with pytest.raises(ScenarioError, match="--workers: expected an integer ≥ 1, got 0"):
        compare("tiny", ["proposed"], [0], workers=0)
    with pytest.raises(ScenarioError, match="--backend: expected one of"):
        compare("tiny", ["proposed"], [0], backend="threads")
    assert main(["compare", "--scenario", "tiny", "--policies", "proposed", "--ray-address", "auto"]) == 2
    assert capsys.readouterr().err.strip() == "distllm-env: error: --ray-address: only used with --backend ray"
    monkeypatch.setitem(sys.modules, "ray", None)       # Ray not installed
    with pytest.raises(ScenarioError, match=r"--backend: ray needs Ray: pip install 'distllm-env\[rllib\]'"):
        map_seeds(_square_or_fail, [1, 2], backend="ray")


def test_ray_backend_equals_serial():
    ray = pytest.importorskip("ray")
    serial = compare("tiny", POLICIES, SEEDS[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        par = compare("tiny", POLICIES, SEEDS[:2], workers=2, backend="ray")
    _assert_same_compare(serial, par)
    assert not ray.is_initialized()       # the local Ray it started is shut down again


def test_evaluate_a_trained_model_with_workers_2_equals_serial(tmp_path):
    """A trained SB3 model goes to the worker processes as is (torch pickles) and decides the same."""
    pytest.importorskip("sb3_contrib")
    from distllm_env.agents.evaluate import evaluate
    from distllm_env.agents.train import train

    res = train("distllm/RequestRouting-Tiny-v0", None, "maskable_ppo", 64, tmp_path / "m.zip", seed=3,
                hyperparams={"n_steps": 64, "batch_size": 64, "n_epochs": 1}, progress_bar=False)
    kw = dict(seeds=[10_000, 10_001], policies=["shortest"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParallelFallbackWarning)     # no silent fallback to serial
        serial, par = evaluate(res.model_path, **kw), evaluate(res.model_path, **kw, workers=2)
    _assert_same_compare(serial.compare, par.compare)
    assert par.margins == serial.margins

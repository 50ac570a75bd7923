"""Outputs that tools read (issue 10 item 4, issue 9 item 8): plain CSV tables with a JSON sidecar, the
paired-difference plot, ``--out`` refused before the run, user import paths found in the current
directory."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from distllm_env.cli import main
from distllm_env.compare import RESULT_COLUMNS, ComparePolicy, CompareResult, compare, paired_differences
from distllm_env.outputs import REQUEST_COLUMNS, sidecar_path

TINY = ["--scenario", "tiny", "--set", "workload.num_requests=6"]


# -- CSV: plain tables, metadata in F.csv.json -----------------------------------------------------------

def test_simulate_csv_reads_with_dictreader_defaults_and_the_sidecar_holds_meta_and_summary(tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert main(["simulate", *TINY, "--placement", "even", "--routing", "shortest", "--seed", "3",
                 "--out", str(out)]) == 0
    with out.open(newline="") as fh:                      # exactly what a newcomer writes
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(REQUEST_COLUMNS)
    assert [int(r["request_id"]) for r in rows] == list(range(6))   # every request once, no comment rows
    side = json.loads(sidecar_path(out).read_text())
    assert sidecar_path(out).name == "r.csv.json"
    assert side["columns"] == list(REQUEST_COLUMNS)
    assert side["meta"]["seed"] == 3 and side["meta"]["scenario"] == "tiny"
    assert side["meta"]["placement"] == "even" and side["meta"]["routing"] == "shortest"
    assert side["summary"]["num_requests"] == 6
    from distllm_env import simulate

    again = simulate("tiny", "even", "shortest", seed=3, overrides=["workload.num_requests=6"])
    assert side["summary"]["mean_per_token_time_s"] == again.summary["mean_per_token_time_s"]


def test_compare_csv_is_a_plain_table_with_a_sidecar(tmp_path):
    res = compare("tiny", ["proposed", "even+shortest"], seeds=[0, 1], overrides=["workload.num_requests=6"])
    path = res.write(tmp_path / "c.csv")
    text = path.read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["policy"] for r in rows] == ["proposed", "even+shortest"]
    assert list(rows[0]) == list(RESULT_COLUMNS)
    assert float(rows[0]["mean_per_token_time_s"]) == pytest.approx(res.results[0]["mean_per_token_time_s"])
    side = json.loads(sidecar_path(path).read_text())
    assert side["meta"]["scenario_hash"] == res.meta["scenario_hash"] and side["meta"]["seeds"] == [0, 1]
    assert len(side["per_seed"]) == 4


# -- the plot: paired differences against a reference ---------------------------------------------------

def _fake_result(ref: list[float], other: list[float]) -> CompareResult:
    seeds = list(range(len(ref)))
    pols = [ComparePolicy("ref", "even", "shortest", "default"), ComparePolicy("other", "even", "random", "default")]
    per_seed = [{"policy": p.label, "seed": s, "mean_per_token_time_s": v}
                for p, vals in zip(pols, (ref, other)) for s, v in zip(seeds, vals)]
    results = [{"policy": p.label, "mean_per_token_time_s": sum(v) / len(v), "mean_per_token_time_s_std": 0.0}
               for p, v in zip(pols, (ref, other))]
    meta = {"version": "x", "scenario": "fake", "scenario_hash": "0" * 12, "overrides": [], "allocation_delays": {},
            "allocation_delay_rule": "none", "derived_calibrations": []}
    return CompareResult(None, seeds, pols, results, per_seed, meta)


def test_paired_differences_hand_computed():
    # the same +10 % on every seed, although the seeds' levels differ 4×: the paired CI has width 0
    (d,) = paired_differences(_fake_result([1.0, 2.0, 4.0], [1.1, 2.2, 4.4]))
    assert d["policy"] == "other" and d["diffs"] == pytest.approx([0.1, 0.1, 0.1])
    assert d["mean"] == pytest.approx(0.1) and d["ci_low"] == pytest.approx(0.1) and d["ci_high"] == pytest.approx(0.1)
    # diffs 0, +10 %, +20 %: sd 0.1, half-width t(0.975, 2) · 0.1 / √3 with t = 4.302652729911275
    (d,) = paired_differences(_fake_result([1.0, 1.0, 1.0], [1.0, 1.1, 1.2]))
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert d["mean"] == pytest.approx(0.1)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((0.1 - half, 0.1 + half))
    assert (d["min"], d["max"]) == pytest.approx((0.0, 0.2))
    (d,) = paired_differences(_fake_result([1.0], [1.5]))       # one seed: no interval
    assert d["mean"] == pytest.approx(0.5) and d["ci_low"] is None


@pytest.mark.parametrize("values", [([1.0, 2.0, 4.0], [1.1, 2.2, 4.4]), ([1.0], [1.5])])
def test_plot_writes_a_png(values, tmp_path):
    res = _fake_result(*values)
    path = res.write(tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- --out is checked before the run -------------------------------------------------------------------

def _commands(out: str) -> list[list[str]]:
    return [
        ["simulate", *TINY, "--out", out],
        ["compare", *TINY, "--policies", "proposed", "--out", out],
        ["evaluate", "--policy", "distllm_env.baselines.simple:ShortestRouter", *TINY, "--seeds", "1",
         "--policies", "shortest", "--out", out],
        ["reproduce", "table8", "--seeds", "1", "--quiet", "--out", out],
        ["split", "--scenario", "splitllm-edge", "--out", out],
        ["train", "--env", "distllm/RequestRouting-Tiny-v0", "--timesteps", "64", "--out", out],
    ]


def _suffix(argv: list[str]) -> str:
    return {"simulate": ".csv", "compare": ".csv", "evaluate": ".png", "train": ".zip"}.get(argv[0], ".json")


@pytest.mark.parametrize("cmd", ["simulate", "compare", "evaluate", "reproduce", "split", "train"])
def test_out_into_an_existing_directory_or_under_a_file_exits_2_before_the_run(cmd, tmp_path, capsys):
    # before the fix these ran the whole command and then died in write_text (exit 1, traceback); a clean
    # exit 2 can only come from the check made before the run
    argv = next(a for a in _commands("X") if a[0] == cmd)
    suffix = _suffix(argv)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for bad, fragment in ((tmp_path / f"dir{suffix}", "existing directory"),
                          (blocker / f"out{suffix}", "not a directory")):
        if fragment == "existing directory":
            bad.mkdir()
        rc = main([*argv[:-1], str(bad)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, err
        assert len(err) == 1 and "--out" in err[0] and fragment in err[0] and "Traceback" not in err[0]


def test_a_writable_out_in_a_new_directory_is_created(tmp_path):
    out = tmp_path / "new" / "deeper" / "r.json"
    assert main(["simulate", *TINY, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["summary"]["num_requests"] == 6


# -- user import paths on the command line find ./my_module without PYTHONPATH ---------------------------

def test_policy_import_path_is_found_in_the_current_directory(tmp_path, monkeypatch, capsys):
    import sys

    mod = "h6_local_router_mod"
    (tmp_path / f"{mod}.py").write_text("from distllm_env.baselines.simple import ShortestRouter\n\n"
                                        "class Mine(ShortestRouter):\n    name = 'mine'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, mod, raising=False)
    assert main(["compare", *TINY, "--policies", f"{mod}:Mine,proposed", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in data["results"]] == [f"{mod}:Mine", "proposed"]
    assert str(tmp_path) not in sys.path            # only while the command runs

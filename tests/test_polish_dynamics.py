"""What a new user hit in the dynamics, churn and fidelity features (issues 11, 12, 14): ``reproduce
--set`` and its resolved ``fidelity`` meta, the ``simulate`` table's truncation/churn rows, plain
summary types, ``compare``'s ``num_rejected`` as a mean, the Azure trace attribution, the licence
expression, and the churn timeline's line styles."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from distllm_env import compare, simulate
from distllm_env.cli import main
from distllm_env.commands.reproduce import _display_rows
from distllm_env.commands.simulate import CHURN_KEYS, SUMMARY_KEYS, summary_keys
from distllm_env.outputs import AZURE_TRACE_ATTRIBUTION
from distllm_env.timeline import line_style

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CHURN = ["churn.distribution=exponential", "churn.mean_uptime_s=10", "churn.mean_downtime_s=30"]


def _run_json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


# -- reproduce --set ----------------------------------------------------------------------------------

def test_reproduce_set_reading_resolves_in_meta_and_matches_the_fidelity_flag(capsys):
    one = _run_json(capsys, ["reproduce", "table3", "--seeds", "1", "--format", "json",
                             "--set", "fidelity.petals_penalty=session-count"])
    fid = one["meta"]["fidelity"]
    assert fid == {"mode": "contracts", "petals_penalty": "session-count", "t1_allocation_delay": True,
                   "client_node": "any", "path_ties": "lowest-index"}
    assert one["meta"]["set_overrides"] == ["fidelity.petals_penalty=session-count"]
    # the same four readings through --set and through --fidelity: identical grids (two routes, one result)
    via_set = _run_json(capsys, ["reproduce", "table3", "--seeds", "1", "--format", "json",
                                 "--set", "fidelity=authors-code"])
    via_flag = _run_json(capsys, ["reproduce", "table3", "--seeds", "1", "--format", "json",
                                  "--fidelity", "authors-code"])
    assert via_set["meta"]["fidelity"] == via_flag["meta"]["fidelity"]
    assert via_flag["meta"]["fidelity"]["mode"] == "authors-code"
    assert [r["ours_s"] for r in via_set["rows"]] == [r["ours_s"] for r in via_flag["rows"]]
    # and the default has the contracts readings
    base = _run_json(capsys, ["reproduce", "table3", "--seeds", "1", "--format", "json"])
    assert base["meta"]["fidelity"]["petals_penalty"] == "free-bytes" and base["meta"]["set_overrides"] == []


def test_reproduce_set_is_applied_to_table6_and_a_bad_one_exits_2(capsys):
    out = _run_json(capsys, ["reproduce", "table6", "--seeds", "1", "--format", "json",
                             "--set", "fidelity.client_node=off-servers"])
    assert out["meta"]["fidelity"]["client_node"] == "off-servers"
    assert "fidelity.client_node=off-servers" in out["meta"]["overrides"]
    assert main(["reproduce", "table3", "--seeds", "1", "--set", "fidelity.petals_penalty=sometimes"]) == 2
    err = capsys.readouterr().err
    assert "fidelity.petals_penalty" in err and len(err.strip().splitlines()) == 1


def test_reproduce_table_prints_dash_for_missing_sessions_and_rounds_only_tiny_std():
    rows = [{"policy": "petals", "ours_s": 1.5, "ours_std_s": 1.858e-16, "proposed_sessions": None},
            {"policy": "proposed", "ours_s": 0.9, "ours_std_s": 0.05, "proposed_sessions": 17}]
    shown = _display_rows(rows)
    assert shown[0]["proposed_sessions"] == "-" and shown[0]["ours_std_s"] == 0.0
    assert shown[1] == rows[1]
    assert rows[0]["ours_std_s"] == 1.858e-16 and rows[0]["proposed_sessions"] is None   # input untouched


def test_reproduce_table3_text_has_no_none(capsys):
    assert main(["reproduce", "table3", "--seeds", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "None" not in out
    petals_rows = [ln for ln in out.splitlines() if " petals " in f" {ln} " and ln.strip()[0].isdigit()]
    assert len(petals_rows) == 12 and all(ln.rstrip().endswith("-") for ln in petals_rows)


# -- simulate table -----------------------------------------------------------------------------------

def test_summary_keys_rule():
    plain = {k: 0 for k in SUMMARY_KEYS} | {"num_truncated": 0, "goodput_requests_per_s": 0.1}
    assert summary_keys(plain, churn=False) == list(SUMMARY_KEYS)
    keys = summary_keys(plain | {"num_truncated": 3}, churn=False)
    assert keys[keys.index("num_rejected") + 1] == "num_truncated" and len(keys) == len(SUMMARY_KEYS) + 1
    full = plain | {"num_hit_by_failure": 2, "mean_recovery_s": 1.0}
    assert summary_keys(full, churn=True)[-len(CHURN_KEYS):] == list(CHURN_KEYS)


def test_simulate_table_shows_churn_rows_only_with_churn(capsys):
    assert main(["simulate", "--scenario", "tiny"]) == 0
    plain = capsys.readouterr().out
    assert not any(k in plain for k in (*CHURN_KEYS, "num_truncated"))
    argv = ["simulate", "--scenario", "tiny"] + [a for o in CHURN for a in ("--set", o)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    res = simulate("tiny", seed=0, overrides=CHURN)
    lines = dict(ln.split(None, 1) for ln in out.splitlines() if ln.split() and ln.split()[0] in CHURN_KEYS)
    assert set(lines) == set(CHURN_KEYS)
    assert int(lines["num_hit_by_failure"]) == res.summary["num_hit_by_failure"] > 0


# -- plain summary types, compare's mean ----------------------------------------------------------------

def _non_plain(x, path=""):
    if isinstance(x, dict):
        return [p for k, v in x.items() for p in _non_plain(v, f"{path}.{k}")]
    if isinstance(x, (list, tuple)):
        return [p for i, v in enumerate(x) for p in _non_plain(v, f"{path}[{i}]")]
    return [] if type(x) in (int, float, str, bool, type(None)) else [f"{path}: {type(x).__name__}"]


@pytest.mark.parametrize("overrides", [[], CHURN], ids=["plain", "churn"])
def test_summary_values_are_plain_python(overrides):
    res = simulate("tiny", seed=0, overrides=overrides)
    assert _non_plain(res.summary) == []
    assert "np." not in repr(res.summary)


def test_compare_num_rejected_is_a_mean_over_seeds():
    res = compare("tiny", ["cg-bp+ws-rr"], seeds=[0, 1, 2], overrides=CHURN)
    per_seed = [r["num_rejected"] for r in res.per_seed]
    assert len(set(per_seed)) > 1                   # the seeds differ, so sum and mean would differ
    assert res.results[0]["num_rejected"] == pytest.approx(np.mean(per_seed))
    assert res.results[0]["num_rejected"] <= max(per_seed)


# -- Azure trace attribution, licence ------------------------------------------------------------------

def test_azure_trace_runs_carry_the_attribution(capsys):
    ov = ["workload.num_requests=20"]
    res = simulate("azure-conv-swarm", seed=0, overrides=ov)
    assert res.meta["data_attribution"] == AZURE_TRACE_ATTRIBUTION
    assert "CC-BY 4.0" in AZURE_TRACE_ATTRIBUTION and "Splitwise" in AZURE_TRACE_ATTRIBUTION
    assert compare("azure-conv-swarm", ["proposed"], seeds=[0], overrides=ov).meta["data_attribution"] \
        == AZURE_TRACE_ATTRIBUTION
    assert "data_attribution" not in simulate("tiny", seed=0).meta
    assert "data_attribution" not in compare("tiny", ["proposed"], seeds=[0]).meta
    assert main(["simulate", "--scenario", "azure-conv-swarm", "--set", "workload.num_requests=20"]) == 0
    assert f"note: data: {AZURE_TRACE_ATTRIBUTION}" in capsys.readouterr().out


def test_licence_expression_covers_the_shipped_traces():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT AND CC-BY-4.0"
    files = project["license-files"]
    assert "distllm_env/data/traces/LICENSE" in files
    assert all((ROOT / f).is_file() for f in files)
    assert "Attribution 4.0" in (ROOT / "distllm_env/data/traces/LICENSE").read_text()


# -- timeline line styles ------------------------------------------------------------------------------

def test_equal_server_lines_stay_distinguishable():
    n = 4
    styles = [line_style(j, n) for j in range(n)]
    # widths strictly fall and z-orders rise, so a later line drawn over an equal earlier one is thinner
    assert all(a["lw"] > b["lw"] for a, b in zip(styles, styles[1:]))
    assert all(a["zorder"] < b["zorder"] for a, b in zip(styles, styles[1:]))
    assert styles[0]["ls"] != styles[2]["ls"] and styles[0]["color"] != styles[2]["color"]

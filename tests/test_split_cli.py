"""``distllm-env split``: output, JSON, errors."""

from __future__ import annotations

import json

from distllm_env.cli import main


def test_split_table_output(capsys):
    assert main(["split", "--scenario", "splitllm-edge", "--requests", "60", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    for text in ("server-only", "prefix-greedy", "ratio-greedy", "dp", "dp vs prefix-greedy", "for context only",
                 "SLA violations", "phone-soc", "sustainable"):
        assert text in out


def test_split_json_output_and_file(capsys, tmp_path):
    out_file = tmp_path / "split.json"
    assert main(["split", "--scenario", "splitllm-wan", "--requests", "40", "--policies", "dp,prefix-greedy",
                 "--format", "json", "--out", str(out_file), "--geo", "--set", "workload.num_requests=8"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(out_file.read_text())
    assert [r["policy"] for r in data["results"]] == ["server-only", "dp", "prefix-greedy"]
    assert data["meta"]["num_requests"] == 40 and data["meta"]["scenario"] == "splitllm-wan"
    assert "dp_vs_prefix-greedy" in data["gains"]
    assert data["meta"]["paper_headline_for_context"]["dp_gain_over_greedy"] == 0.19
    geo = data["geo"]
    assert geo["no split"]["mean_client_blocks"] == 0 and geo["dp prefix split"]["num_rejected"] == 0


def test_split_bad_input_exits_2(capsys):
    assert main(["split", "--scenario", "splitllm-edge", "--policies", "nope", "--requests", "5"]) == 2
    assert main(["split", "--scenario", "tiny", "--requests", "5"]) == 2
    assert main(["split", "--scenario", "splitllm-edge", "--set", "split.sla.factor=-1"]) == 2
    assert main(["split", "--scenario", "splitllm-edge", "--requests", "0"]) == 2
    err = capsys.readouterr().err
    assert "split.sla.factor" in err and "nope" in err and "Traceback" not in err

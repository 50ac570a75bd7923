"""The distllm-env command line: outputs, overrides and exit codes (docs/contracts.md §5–6)."""

import csv
import json
import subprocess
import sys

import pytest

from distllm_env.cli import main
from distllm_env.outputs import REQUEST_COLUMNS, sidecar_path


def test_simulate_prints_a_summary_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "req.csv"
    rc = main(["simulate", "--scenario", "tiny", "--placement", "even", "--routing", "shortest", "--seed", "2",
               "--set", "workload.num_requests=12", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "mean_per_token_time_s" in text and "scenario tiny" in text
    lines = out.read_text().splitlines()
    meta = json.loads(sidecar_path(out).read_text())["meta"]   # the CSV is a plain table; metadata in F.csv.json
    assert meta["seed"] == 2 and meta["overrides"] == ["workload.num_requests=12"]
    assert meta["scenario"] == "tiny" and len(meta["scenario_hash"]) == 12 and "version" in meta
    assert not any(ln.startswith("#") for ln in lines)
    rows = list(csv.DictReader(lines))
    assert tuple(rows[0].keys()) == REQUEST_COLUMNS
    assert len(rows) == 12 and all(r["status"] == "completed" for r in rows)
    assert rows[0]["route"].startswith("s") and ":" in rows[0]["route"]


def test_simulate_json_output(tmp_path):
    out = tmp_path / "req.json"
    assert main(["simulate", "--scenario", "tiny", "--placement", "even", "--routing", "shortest",
                 "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["placement"] == "even"
    hop = data["requests"][0]["route"][0]
    assert set(hop) == {"server", "first_block", "last_block"}


@pytest.mark.parametrize("argv,fragment", [
    (["simulate", "--scenario", "tiny", "--set", "workload.colour=blue"], "workload.colour"),
    (["simulate", "--scenario", "nope"], "unknown scenario preset"),
    (["simulate", "--scenario", "tiny", "--routing", "teleport"], "unknown routing 'teleport'"),
    (["simulate", "--scenario", "tiny", "--placement", "no_such_module:Policy"], "cannot import module"),
    (["simulate", "--scenario", "tiny", "--set", "servers.0.memory_gb=-1"], "servers.0.memory_gb"),
    (["simulate", "--scenario", "tiny", "--out", "x.txt"], "--out"),
    (["simulate", "--scenario", "tiny", "--seed", "-1"], "--seed"),
    (["scenarios", "validate", "tiny", "--set", "workload.num_requests=0"], "workload.num_requests"),
])
def test_bad_input_exits_2_with_one_clean_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and "Traceback" not in err[0]


def test_scenarios_subcommands(capsys):
    assert main(["scenarios", "list", "--format", "json"]) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert "paper-clustered" in names and "tiny" in names
    assert main(["scenarios", "show", "paper-gtsce", "--seed", "1"]) == 0
    shown = capsys.readouterr().out
    assert "repetita: GtsCe" in shown and shown.count("MIG-1g.10gb at") == 48
    assert main(["scenarios", "validate", "tiny", "paper-clustered"]) == 0


def test_console_script_runs_in_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "distllm_env.cli", "simulate", "--scenario", "tiny",
                           "--set", "workload.colour=1"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [["simulate"], ["compare"], ["split"], ["scenarios", "show"],
                                     ["scenarios", "validate"], ["train"]])
def test_commands_that_load_scenarios_take_allow_import(command, capsys):
    """The opt-in of the trust boundary (README, "Trust boundary") exists wherever a scenario is loaded."""
    assert main([*command, "--help"]) == 0
    assert "--allow-import" in capsys.readouterr().out

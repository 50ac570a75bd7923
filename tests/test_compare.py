"""compare(): schema of its outputs, paired seeds, user policies by import path, delays rule."""

import csv
import json

import pytest

from distllm_env.cli import main
from distllm_env.compare import RESULT_COLUMNS, compare
from distllm_env.errors import PolicyLoadError

USER_POLICY = '''
import numpy as np
from distllm_env.chains import HopCost


class FewestHopsRouter:
    """Routes on the chain with the fewest hops (unit cost per hop)."""
    name = "fewest-hops"
    family = "default"

    def route(self, request, view, rng):
        n = view.num_servers
        cost = HopCost(fixed_s=np.ones(n), per_block_s=np.zeros(n))
        return view.shortest(request.client, cost, request.client_blocks)[0]
'''


def test_compare_schema_and_paired_seeds(tmp_path):
    res = compare("tiny", ["even+shortest", "even+random"], seeds=[0, 1, 2])
    assert [r["policy"] for r in res.results] == ["even+shortest", "even+random"]
    assert len(res.per_seed) == 6
    for row in res.results:
        assert set(RESULT_COLUMNS) <= set(row)
    # paired seeds: both policies saw the same arrivals
    a, b = res.runs[("even+shortest", 1)], res.runs[("even+random", 1)]
    assert [r.arrival_s for r in a.records] == [r.arrival_s for r in b.records]
    # the mean over seeds is the mean of the per-seed values
    per = [r["mean_per_token_time_s"] for r in res.per_seed if r["policy"] == "even+shortest"]
    assert res.results[0]["mean_per_token_time_s"] == pytest.approx(sum(per) / 3)
    out = tmp_path / "c.json"
    res.write(out)
    data = json.loads(out.read_text())
    assert set(data) == {"meta", "results", "per_seed"}
    for k in ("version", "scenario", "scenario_hash", "overrides", "seeds", "allocation_delays"):
        assert k in data["meta"]
    res.write(tmp_path / "c.csv")
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0].startswith("policy,")                     # a plain table; meta in the sidecar
    assert json.loads((tmp_path / "c.csv.json").read_text())["meta"]["seeds"] == data["meta"]["seeds"]
    rows = list(csv.DictReader(lines))
    assert tuple(rows[0]) == RESULT_COLUMNS and len(rows) == 2
    res.write(tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_user_policy_by_import_path_gets_equal_delays(tmp_path, monkeypatch):
    (tmp_path / "my_policies.py").write_text(USER_POLICY)
    monkeypatch.syspath_prepend(str(tmp_path))
    sc = ["workload.num_requests=20"]
    res = compare("paper-clustered", ["my_policies:FewestHopsRouter", "cg-bprr"], seeds=[0], overrides=sc)
    assert res.meta["allocation_delays"] == {}
    assert "user" in res.meta["allocation_delay_rule"]
    assert res.results[0]["policy"] == "my_policies:FewestHopsRouter"
    run = res.runs[("my_policies:FewestHopsRouter", 0)]
    assert all(r.hops == 2 for r in run.records)           # A100 → A100 is the 2-hop chain
    # without a user policy the scenario's per-family delays apply
    res2 = compare("paper-clustered", ["cg-bprr", "petals"], seeds=[0], overrides=sc)
    assert res2.meta["allocation_delays"] == {"petals": 250.0, "proposed": 60.0}
    assert {r["policy"]: r["allocation_delay_s"] for r in res2.results} == {"cg-bprr": 60.0, "petals": 250.0}


def test_bad_policies():
    with pytest.raises(PolicyLoadError, match="unknown policy"):
        compare("tiny", ["teleport"])
    with pytest.raises(PolicyLoadError, match="cannot import"):
        compare("tiny", ["nowhere.mod:Thing"])
    with pytest.raises(PolicyLoadError, match="duplicate"):
        compare("tiny", ["even+shortest", "even+shortest"])


def test_compare_cli(tmp_path, capsys):
    rc = main(["compare", "--scenario", "tiny", "--policies", "even+shortest,even+round-robin", "--seeds", "2",
               "--out", str(tmp_path / "r.json")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "even+round-robin" in text and "mean_per_token_time_s" in text
    assert json.loads((tmp_path / "r.json").read_text())["meta"]["seeds"] == [0, 1]
    assert main(["compare", "--scenario", "tiny", "--policies", "even+teleport"]) == 2

"""Regression tests for a new user's report (compare's allocation-delay rule, import-path safety,
compare CSV columns, one-line argument errors, assert_beats errors).  docs/contracts.md §5–§7."""

import csv
import sys
import textwrap
from pathlib import Path

import pytest

from distllm_env.cli import COMMAND_MODULES, main
from distllm_env.compare import compare
from distllm_env.errors import DistLLMError, PolicyLoadError, ScenarioError
from distllm_env.registry import make_placement
from distllm_env.testing import assert_beats

TINY = Path(__file__).resolve().parents[1] / "scenarios" / "tiny.yaml"


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A throw-away importable module ``newuser_mod`` with an unchanged WSRRRouter subclass and a
    class whose constructor writes a marker file (and that is no policy)."""
    marker = tmp_path / "CONSTRUCTED"
    (tmp_path / "newuser_mod.py").write_text(textwrap.dedent(f"""
        from distllm_env.baselines.ws_rr import WSRRRouter

        class Router(WSRRRouter):
            pass

        class Evil:
            def __init__(self, **kwargs):
                open({str(marker)!r}, "w").close()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("newuser_mod", None)


def test_placement_plus_user_router_is_a_user_policy_for_the_delay_rule(user_module):
    # the preset would be charged 60 s per request; with a user policy in the comparison all delays are 0
    res = compare("tiny", ["proposed", "cg-bp+newuser_mod:Router"], seeds=[0],
                  overrides=["workload.num_requests=10", "simulator.allocation_delay_s.proposed=60"])
    assert res.meta["allocation_delays"] == {}
    assert res.meta["allocation_delay_rule"].startswith("equal (0)")
    prop, mine = res.results
    assert prop["allocation_delay_s"] == mine["allocation_delay_s"] == 0.0
    # an unchanged subclass of WS-RR under CG-BP is "proposed": identical results under one rule
    for key in ("mean_per_token_time_s", "ttft_p50_s", "ttft_p95_s", "wait_mean_s", "num_rejected"):
        assert prop[key] == mine[key], key
    assert [p.user for p in res.policies] == [False, True]


def test_presets_alone_keep_the_scenario_delays():
    res = compare("tiny", ["proposed"], seeds=[0],
                  overrides=["workload.num_requests=5", "simulator.allocation_delay_s.proposed=60"])
    assert res.meta["allocation_delays"]["proposed"] == 60.0
    assert res.results[0]["allocation_delay_s"] == 60.0


def test_allow_import_never_constructs_a_non_policy(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.yaml"
    evil.write_text(TINY.read_text() + textwrap.dedent(f"""
        policy_defaults:
          placement: "subprocess:Popen"
          options:
            "subprocess:Popen": {{args: [touch, {str(marker)!r}]}}
    """))
    rc = main(["simulate", "--scenario", str(evil), "--allow-import", "--set", "workload.num_requests=3"])
    err = capsys.readouterr().err
    assert rc == 2
    assert not marker.exists()
    assert err.count("\n") == 1 and err.startswith("distllm-env: error: ") and "place(instance, rng)" in err


def test_no_entry_point_constructs_an_import_without_place_or_route(user_module):
    with pytest.raises(PolicyLoadError, match="place"):
        make_placement("newuser_mod:Evil")
    with pytest.raises(PolicyLoadError, match="neither place"):
        compare("tiny", ["newuser_mod:Evil"], seeds=[0])
    with pytest.raises(PolicyLoadError, match="neither place"):
        assert_beats("newuser_mod:Evil", "petals", "tiny")
    assert not user_module.exists()


def test_compare_csv_has_every_results_column(tmp_path):
    res = compare("tiny", ["proposed", "even+shortest"], seeds=[0], overrides=["workload.num_requests=5"])
    out = res.write(tmp_path / "c.csv")
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == list(res.results[0].keys())
    assert "allocation_delay_s" in rows[0]
    assert [r["policy"] for r in rows] == ["proposed", "even+shortest"]


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_every_subcommand_reports_a_bad_argument_in_one_line(module, capsys):
    cmd = module.rsplit(".", 1)[1]
    rc = main([cmd, "--no-such-flag"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("distllm-env: error: ") and err.count("\n") == 1


def test_bad_seed_names_the_flag_in_one_line(capsys):
    rc = main(["simulate", "--scenario", "tiny", "--seed", "1.5"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == "distllm-env: error: --seed: invalid int value: '1.5'\n"


def test_unknown_compare_policy_names_the_flag(capsys):
    rc = main(["compare", "--scenario", "tiny", "--policies", "petals,nope"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("distllm-env: error: --policies: unknown policy 'nope'") and err.count("\n") == 1


def test_assert_beats_without_decision_raises_a_scenario_error():
    with pytest.raises(ScenarioError) as info:
        assert_beats("random", "petals", "tiny")
    assert isinstance(info.value, DistLLMError) and info.value.path == "decision"


def test_png_mean_labels_do_not_cover_the_per_seed_dots():
    import matplotlib.pyplot as plt
    import numpy as np

    from distllm_env.compare import compare_figure

    res = compare("tiny", ["proposed", "even+shortest", "cg-bp+shortest"], seeds=[0, 1, 2],
                  overrides=["workload.num_requests=6"])
    fig = compare_figure(res)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text().endswith(" %")]
        assert len(boxes) == 2
        dots = np.vstack([ax.transData.transform(c.get_offsets()) for c in ax.collections
                          if len(c.get_offsets())])
        radius_px = 6.0   # the largest marker (the mean's diamond, s=40 pt²) plus a margin, in pixels
        for b in boxes:
            inside = ((dots[:, 0] > b.x0 - radius_px) & (dots[:, 0] < b.x1 + radius_px)
                      & (dots[:, 1] > b.y0 - radius_px) & (dots[:, 1] < b.y1 + radius_px))
            assert not inside.any(), (b, dots[inside])
    finally:
        plt.close(fig)


def test_delay_rule_wording_when_the_scenario_sets_none(capsys):
    rc = main(["compare", "--scenario", "tiny", "--policies", "proposed", "--set", "workload.num_requests=4"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "allocation delays (auto): none — the scenario sets none" in out


def test_petals_on_a_gpu_below_its_memory_rule_is_an_input_error(capsys):
    # tiny's 0.105 GB toy GPU is below PETALS' per-GPU minimum: autograd reserve 2 GiB·1024/14336
    # = 153.4 MB + one block (≈ 25.2 MB of weights) + its 4096-token cache 16.8 MB ≈ 0.196 GB
    rc = main(["compare", "--scenario", "tiny", "--policies", "petals,proposed"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "PETALS' block-count rule gives 0 blocks to every server" in err and "needs at least 0.19" in err
    rc = main(["compare", "--scenario", "tiny", "--policies", "petals,proposed",
               "--set", "gpus.toy-gpu.memory_gb=0.25", "--set", "workload.num_requests=4"])
    assert rc == 0 and "petals" in capsys.readouterr().out


def test_evaluate_names_a_user_policy_by_its_import_path_like_compare(capsys):
    spec = "distllm_env.baselines.simple:ShortestRouter"
    rc = main(["evaluate", "--policy", spec, "--scenario", "tiny", "--set", "workload.num_requests=4",
               "--seeds", "1", "--policies", "shortest"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"{spec} vs each baseline" in out and "policy_s" in out and "learned_s" not in out
    res = compare("tiny", [spec, "even+shortest"], seeds=[0], overrides=["workload.num_requests=4"])
    assert res.results[0]["policy"] == spec


def test_out_creates_missing_parent_folders_and_says_so(tmp_path, capsys):
    out = tmp_path / "new" / "sub" / "c.csv"
    rc = main(["compare", "--scenario", "tiny", "--policies", "proposed", "--set", "workload.num_requests=3",
               "--out", str(out)])
    assert rc == 0 and out.is_file() and (tmp_path / "new" / "sub" / "c.csv.json").is_file()
    capsys.readouterr()
    for cmd in ("compare", "simulate"):
        assert main([cmd, "--help"]) == 0
        assert "missing parent folders are created" in " ".join(capsys.readouterr().out.split())
    contracts = (Path(__file__).resolve().parents[1] / "docs" / "contracts.md").read_text()
    assert "creates missing parent folders" in contracts


def test_every_core_module_is_placed_in_the_architecture_table():
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "architecture.md").read_text()
    table = text.split("## Where each concept lives", 1)[1].split("\n## ", 1)[0]
    missing = [p.name for p in sorted((root / "distllm_env").glob("*.py"))
               if p.name not in ("__init__.py", "_version.py") and f"`{p.name}`" not in text]
    assert not missing, f"modules in no row of docs/architecture.md: {missing}"
    for name in ("release_list.py", "backoff.py", "step_function.py"):
        assert f"`{name}`" in table
    assert "distllm_env.baselines" in table and "distllm_env.agents" in table


def test_summary_keys_are_exactly_the_documented_ones(tmp_path):
    import json
    import re

    import distllm_env

    res = distllm_env.simulate("tiny", "even", "shortest", seed=0, overrides=["workload.num_requests=4"])
    contracts = (Path(__file__).resolve().parents[1] / "docs" / "contracts.md").read_text()
    para = contracts.split("**Summary**", 1)[1].split("Percentiles use", 1)[0]
    always, churn_only = para.split("under churn also", 1)
    named = set(re.findall(r"`([a-z_0-9]+)`", always)) - {"summary", "simulate", "max_length"}
    assert named == set(res.summary)
    churned = distllm_env.simulate("tiny", "even", "shortest", seed=0,
                                   overrides=["workload.num_requests=4", "churn.distribution=exponential",
                                              "churn.mean_uptime_s=60", "churn.mean_downtime_s=10"])
    assert named | set(re.findall(r"`([a-z_0-9]+)`", churn_only)) == set(churned.summary)
    # the CLI-only timings are not in the summary nor in any file
    assert not {"placement_time_s", "routing_decision_median_s"} & set(res.summary)
    out = res.write(tmp_path / "r.csv")
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["summary"].keys() == res.summary.keys()

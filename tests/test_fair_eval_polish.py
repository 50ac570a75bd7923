"""New-user findings on compare / evaluate / allocation delays (issue 13 polish): exit codes of
``--keep-going``, one allocation-delay family rule for ``simulate`` / ``compare`` / ``assert_beats``
(an object passed from Python is family ``default`` unless it is an instance of exactly a registered
class, labelled by its own name or class name), notes
for comparisons that are not like for like, ``--policies +NAME`` and the generalisation note."""

from __future__ import annotations

import pytest

import distllm_env
from distllm_env.allocation_delays import policy_family, unequal_delays_note
from distllm_env.baselines.ws_rr import WSRRRouter
from distllm_env.cli import main
from distllm_env.compare import compare, object_label
from distllm_env.testing import fair_pair

CLUSTER_OV = ["workload.num_requests=5"]
#: paper-clustered's fitted per-family constants (docs/contracts.md §4)
PAPER_DELAYS = {"petals": 250.0, "proposed": 60.0}


class Mine(WSRRRouter):
    """A user's router that inherits WS-RR's registry ``name``."""


class Named(WSRRRouter):
    name = "my-router"


# --------------------------------------------------------------------------------------------------
# --keep-going exit codes, the hint without it, the zero footer
# --------------------------------------------------------------------------------------------------

def test_keep_going_exits_2_when_no_policy_ran(capsys):
    rc = main(["compare", "--scenario", "tiny", "--policies", "petals", "--seeds", "1", "--keep-going"])
    cap = capsys.readouterr()
    assert rc == 2
    assert "failed: petals: seed 0: PlacementError" in cap.out
    assert cap.err.strip() == "distllm-env: error: --policies: no policy ran (every one failed; reasons above)"


def test_keep_going_partial_failure_exits_0(capsys):
    rc = main(["compare", "--scenario", "tiny", "--policies", "proposed,petals", "--seeds", "1", "--keep-going",
               "--format", "json"])
    cap = capsys.readouterr()
    assert rc == 0 and cap.err == ""
    assert '"failed_policies"' in cap.out


def test_without_keep_going_the_error_line_names_the_flag(capsys):
    rc = main(["compare", "--scenario", "tiny", "--policies", "proposed,petals", "--seeds", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("distllm-env: error: PlacementError: petals:")
    assert err[0].endswith("(--keep-going reports it and runs the rest)")


def test_zero_footer_wording(capsys):
    assert main(["compare", "--scenario", "tiny", "--policies", "proposed", "--seeds", "1",
                 "--allocation-delays", "zero"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "allocation delays (zero): none for any policy" in lines


# --------------------------------------------------------------------------------------------------
# one family rule: a Python object is family default (docs/contracts.md §4)
# --------------------------------------------------------------------------------------------------

def test_policy_family_and_object_label():
    assert policy_family("cg-bp", "ws-rr") == "proposed" and policy_family("petals", "petals") == "petals"
    # a configured baseline (exactly its registered class) keeps its family; a subclass is the user's
    assert policy_family("cg-bp", WSRRRouter(last_hop_s=0.002)) == "proposed"
    assert policy_family("cg-bp", Mine()) == "default" and policy_family(Named(), "ws-rr") == "default"
    assert policy_family("cg-bp", "petals") == "default"
    assert object_label(Mine()) == "Mine" and object_label(Mine) == "Mine"
    assert object_label(WSRRRouter()) == "ws-rr"
    assert object_label(Named()) == "my-router"


@pytest.mark.parametrize("router, family, delay_s", [
    ("ws-rr", "proposed", PAPER_DELAYS["proposed"]), (WSRRRouter(), "proposed", PAPER_DELAYS["proposed"]),
    (Mine(), "default", 0.0), (Named(), "default", 0.0)])
def test_simulate_charges_objects_as_family_default(router, family, delay_s):
    res = distllm_env.simulate("paper-clustered", "cg-bp", router, overrides=CLUSTER_OV)
    assert res.family == family and res.meta["family"] == family
    assert res.summary["allocation_delay_s"] == delay_s


def test_compare_labels_objects_and_charges_what_it_reports():
    res = compare("paper-clustered", [WSRRRouter(), Mine()], overrides=CLUSTER_OV)
    assert [(p.label, p.family) for p in res.policies] == [("ws-rr", "proposed"), ("Mine", "default")]
    res = compare("paper-clustered", ["proposed", Mine()], overrides=CLUSTER_OV, allocation_delays="scenario")
    rows = {r["policy"]: r for r in res.results}
    assert rows["proposed"]["allocation_delay_s"] == 60.0 and rows["Mine"]["allocation_delay_s"] == 0.0
    # the simulation charged exactly what the row reports
    assert {lbl: run.summary["allocation_delay_s"] for (lbl, _), run in res.runs.items()} == {"proposed": 60.0,
                                                                                              "Mine": 0.0}
    assert "not like for like" in res.meta["allocation_delays_unequal_note"]


def test_fair_pair_uses_the_same_rule():
    sc = distllm_env.load_scenario("paper-clustered", CLUSTER_OV)
    cand, base, dec = fair_pair(Mine(), "ws-rr", sc)
    assert dec == "routing"
    assert (cand.label, cand.family) == ("cg-bp+Mine", "default") and (base.label, base.family) == ("cg-bp+ws-rr",
                                                                                                     "proposed")


# --------------------------------------------------------------------------------------------------
# notes when delays are not like for like
# --------------------------------------------------------------------------------------------------

def test_unequal_note_only_for_family_default_against_presets():
    fam = {"petals": "petals", "proposed": "proposed", "cg-bp+petals": "default"}
    assert unequal_delays_note({"petals": "petals", "proposed": "proposed"}, {"petals": 250.0, "proposed": 60.0},
                               "auto") is None         # the published comparison
    assert unequal_delays_note(fam, {"petals": 250.0, "proposed": 60.0, "cg-bp+petals": 0.0}, "zero") is None
    note = unequal_delays_note(fam, {"petals": 250.0, "proposed": 60.0, "cg-bp+petals": 0.0}, "auto")
    assert note and "cg-bp+petals 0 s" in note


def test_compare_auto_notes_a_non_preset_pair(capsys):
    assert main(["compare", "--scenario", "paper-clustered", "--set", CLUSTER_OV[0], "--policies",
                 "cg-bp+petals,proposed", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "note: allocation delays differ (cg-bp+petals 0 s, proposed 60 s)" in out


def test_evaluate_scenario_delays_notes_the_unfair_comparison():
    from distllm_env.agents.evaluate import evaluate

    res = evaluate(policy=Mine, scenario="paper-clustered", seeds=[10_000],
                   overrides=CLUSTER_OV, policies=["ws-rr"], allocation_delays="scenario")
    per = res.meta["allocation_delay_per_policy_s"]
    assert per == {"Mine": 0.0, "cg-bp+ws-rr": 60.0}
    assert any(n.startswith("not a fair comparison: allocation delays differ") for n in res.notes)
    fair = evaluate(policy=Mine, scenario="paper-clustered", seeds=[10_000],
                    overrides=CLUSTER_OV, policies=["ws-rr"])
    assert not any("not a fair comparison" in n for n in fair.notes)


# --------------------------------------------------------------------------------------------------
# evaluate --policies +NAME; the generalisation note
# --------------------------------------------------------------------------------------------------

def test_evaluate_policies_plus_name_adds_to_the_defaults():
    from distllm_env.agents.evaluate import baseline_specs, split_extra_policies

    sc = distllm_env.load_scenario("tiny")
    defaults = baseline_specs("BlockPlacement", sc)
    assert split_extra_policies(["+milp", "ws-rr"]) == (["ws-rr"], ["milp"])
    assert baseline_specs("BlockPlacement", sc, policies=["+milp"]) == defaults + ["milp+ws-rr"]
    assert baseline_specs("BlockPlacement", sc, policies=["milp"]) == ["milp+ws-rr"]
    assert baseline_specs("BlockPlacement", sc, policies=["even", "+milp"]) == ["even+ws-rr", "milp+ws-rr"]
    assert baseline_specs("RequestRouting", sc, policies=["+cg-bp+ws-rr"]) == baseline_specs("RequestRouting", sc)


def test_generalisation_note_only_for_structural_changes():
    from distllm_env.agents.evaluate import _structural_changes

    trained = {"scenario": "tiny", "overrides": [], "scenario_raw": None}
    assert _structural_changes(trained, distllm_env.load_scenario("tiny", ["workload.num_requests=30"])) == []
    changed = _structural_changes(trained, distllm_env.load_scenario("paper-clustered"))
    assert {"model", "topology", "servers"} <= set(changed)

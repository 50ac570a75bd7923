"""Fair evaluation (issue 13 item 1, item 5 last bullet): one allocation-delay rule for compare,
evaluate, assert_beats and learned policies (``auto | scenario | zero | equal:SECONDS``), the
strongest non-learned baselines in evaluate's default tables, and baselines that cannot run reported
as failed while the rest still runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import distllm_env
from distllm_env.cli import main
from distllm_env.compare import AllocationDelayRule, compare, parse_allocation_delays
from distllm_env.errors import ScenarioError
from distllm_env.testing import assert_beats

CLUSTER_OV = ["workload.num_requests=20"]
#: paper-clustered's fitted per-family constants (docs/contracts.md §4)
PAPER_DELAYS = {"petals": 250.0, "proposed": 60.0}


def _ttfts_s(run) -> list[float]:
    """Time to first token (s) of every completed request of a run (at least one)."""
    out = [r.first_token_s - r.arrival_s for r in run.records if np.isfinite(r.first_token_s)]
    assert out
    return out


class EvenRouterless:
    """A user placement (``place`` only): even block placement."""

    name = "user-even"

    def place(self, instance, rng):
        from distllm_env.baselines.simple import EvenPlacement

        return EvenPlacement().place(instance, rng)


# --------------------------------------------------------------------------------------------------
# the one parser
# --------------------------------------------------------------------------------------------------

def test_parse_allocation_delays_forms():
    assert parse_allocation_delays(None) == AllocationDelayRule("auto")
    assert parse_allocation_delays("auto").spec == "auto"
    assert parse_allocation_delays(" Scenario ").mode == "scenario"
    assert parse_allocation_delays("zero").mode == "zero"
    rule = parse_allocation_delays("equal:60")
    assert (rule.mode, rule.seconds, rule.spec) == ("equal", 60.0, "equal:60")
    assert parse_allocation_delays("equal:0.5").seconds == 0.5
    assert parse_allocation_delays({"petals": 3}).given == (("petals", 3.0),)
    sc = distllm_env.load_scenario("paper-clustered")
    # resolved per family (docs/contracts.md §4): equal charges every family, learned/user ("default") too
    assert rule.resolve(sc)[0] == {"default": 60.0}
    for fam in ("petals", "proposed", "default"):
        assert rule.delay_for(sc, fam) == 60.0
        assert parse_allocation_delays("zero").delay_for(sc, fam) == 0.0
    scen = parse_allocation_delays("scenario")
    assert [scen.delay_for(sc, f) for f in ("petals", "proposed", "default")] == [250.0, 60.0, 0.0]
    auto = parse_allocation_delays("auto")
    assert auto.resolve(sc, user=False)[0] == PAPER_DELAYS and auto.resolve(sc, user=True)[0] == {}


@pytest.mark.parametrize("bad", ["equal", "equal:", "equal:abc", "equal:-1", "equal:nan", "equal:inf", "half", "",
                                 3, {"petals": -1}, {"petals": "x"}])
def test_parse_allocation_delays_refuses_bad_values_naming_the_flag(bad):
    with pytest.raises(ScenarioError) as info:
        parse_allocation_delays(bad)
    msg = str(info.value)
    assert msg.startswith("--allocation-delays") and "\n" not in msg
    if not isinstance(bad, dict):
        assert "equal:SECONDS" in msg


# --------------------------------------------------------------------------------------------------
# compare / assert_beats
# --------------------------------------------------------------------------------------------------

def test_compare_rules_charge_the_documented_delays():
    pols = ["petals", "proposed", EvenRouterless()]
    seeds = [0]
    by_rule = {}
    for rule in ("equal:60", "zero", "scenario", "auto"):
        res = compare("paper-clustered", pols, seeds, CLUSTER_OV, allocation_delays=rule)
        by_rule[rule] = res
        assert res.meta["allocation_delays_mode"] == rule
        got = {r["policy"]: r["allocation_delay_s"] for r in res.per_seed}
        assert got == res.meta["allocation_delay_per_policy_s"]
        expected = {"equal:60": {"petals": 60.0, "proposed": 60.0, "user-even": 60.0},
                    "zero": {"petals": 0.0, "proposed": 0.0, "user-even": 0.0},
                    "scenario": {"petals": 250.0, "proposed": 60.0, "user-even": 0.0},
                    "auto": {"petals": 0.0, "proposed": 0.0, "user-even": 0.0}}[rule]  # a user policy: auto → 0
        assert got == expected, rule
    # agreement with simulate() given the delay explicitly
    sc = distllm_env.load_scenario("paper-clustered", CLUSTER_OV)
    ref = distllm_env.simulate(sc, "petals", "petals", seed=0, allocation_delays={"petals": 60.0})
    petals60 = next(r for r in by_rule["equal:60"].per_seed if r["policy"] == "petals")
    assert petals60["mean_per_token_time_s"] == ref.summary["mean_per_token_time_s"]
    # proposed is charged 60 s under both "scenario" and "equal:60": identical runs
    prop = [next(r for r in by_rule[k].per_seed if r["policy"] == "proposed") for k in ("scenario", "equal:60")]
    assert prop[0]["mean_per_token_time_s"] == prop[1]["mean_per_token_time_s"]
    # the delay is really charged: every first token comes at least 60 s after its arrival
    for (label, _), run in by_rule["equal:60"].runs.items():
        assert min(_ttfts_s(run)) >= 60.0, label
    for (label, _), run in by_rule["zero"].runs.items():
        assert min(_ttfts_s(run)) < 60.0, label


def test_assert_beats_honours_the_rule():
    seeds = [0, 1]
    s60 = assert_beats("proposed", "petals", "paper-clustered", seeds=seeds, overrides=CLUSTER_OV,
                       allocation_delays="equal:60")
    assert s60["allocation_delays"] == "equal:60"
    assert s60["allocation_delay_per_policy_s"] == {"proposed": 60.0, "petals": 60.0}
    sc = distllm_env.load_scenario("paper-clustered", CLUSTER_OV)
    ref = np.mean([distllm_env.simulate(sc, "petals", "petals", seed=s, allocation_delays={"default": 60.0})
                   .summary["mean_per_token_time_s"] for s in seeds])
    assert s60["baseline_mean_s"] == pytest.approx(ref, rel=1e-12)
    ssc = assert_beats("proposed", "petals", "paper-clustered", seeds=seeds, overrides=CLUSTER_OV,
                       allocation_delays="scenario")
    assert ssc["allocation_delay_per_policy_s"] == {"proposed": 60.0, "petals": 250.0}
    assert ssc["baseline_mean_s"] > s60["baseline_mean_s"]           # 250 s instead of 60 s per request
    s0 = assert_beats("proposed", "petals", "paper-clustered", seeds=seeds, overrides=CLUSTER_OV)
    assert s0["allocation_delays"] == "zero" and set(s0["allocation_delay_per_policy_s"].values()) == {0.0}
    with pytest.raises(ScenarioError, match="allocation_delays"):
        assert_beats("proposed", "petals", "paper-clustered", seeds=seeds, allocation_delays="equal:x")


# --------------------------------------------------------------------------------------------------
# CLI: bad values, keep going
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [["compare", "--scenario", "tiny", "--policies", "proposed"],
                                 ["evaluate", "--policy", "distllm_env.baselines.simple:EvenPlacement",
                                  "--scenario", "tiny"]])
def test_cli_bad_allocation_delays_exit_2_with_one_line(cmd, capsys):
    assert main([*cmd, "--seeds", "1", "--allocation-delays", "equal:soon"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allocation-delays" in err and "equal:SECONDS" in err
    assert "Traceback" not in err


def test_cli_compare_equal_delays_and_keep_going(tmp_path, capsys):
    # without --keep-going a policy that cannot run stops the comparison (exit 2, one line)
    assert main(["compare", "--scenario", "tiny", "--policies", "petals,proposed", "--seeds", "1"]) == 2
    assert "PlacementError" in capsys.readouterr().err
    js, csv = tmp_path / "c.json", tmp_path / "c.csv"
    rc = main(["compare", "--scenario", "tiny", "--policies", "petals,proposed", "--seeds", "2", "--keep-going",
               "--allocation-delays", "equal:60", "--out", str(js), "--out", str(csv)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "failed: petals: seed 0: PlacementError" in out and "equal:60" in out
    data = json.loads(js.read_text())
    rows = {r["policy"]: r for r in data["results"]}
    assert rows["petals"]["status"].startswith("failed: seed 0: PlacementError")
    assert rows["petals"]["mean_per_token_time_s"] is None               # NaN in JSON
    assert rows["proposed"]["status"] == "ok" and rows["proposed"]["allocation_delay_s"] == 60.0
    assert {r["policy"] for r in data["per_seed"]} == {"proposed"} and len(data["per_seed"]) == 2
    assert data["meta"]["failed_policies"]["petals"].startswith("seed 0: PlacementError")
    assert data["meta"]["allocation_delay_per_policy_s"] == {"petals": 60.0, "proposed": 60.0}
    lines = csv.read_text().splitlines()
    assert lines[0].endswith(",status") and "failed: seed 0: PlacementError" in lines[1]


def test_compare_keep_going_in_workers_equals_serial():
    serial = compare("tiny", ["petals", "proposed"], [0, 1], keep_going=True)
    par = compare("tiny", ["petals", "proposed"], [0, 1], keep_going=True, workers=2)
    strip = lambda rows: json.dumps([{k: v for k, v in r.items() if k != "algorithm_time_s"} for r in rows])  # noqa: E731
    assert strip(par.results) == strip(serial.results)    # wall-clock algorithm time aside
    assert par.meta["failed_policies"] == serial.meta["failed_policies"]


# --------------------------------------------------------------------------------------------------
# evaluate: baselines that fail, strongest baselines
# --------------------------------------------------------------------------------------------------

def test_evaluate_keeps_going_when_a_baseline_fails(tmp_path, capsys):
    js, csv = tmp_path / "e.json", tmp_path / "e.csv"
    rc = main(["evaluate", "--policy", "distllm_env.baselines.simple:EvenPlacement", "--scenario", "tiny",
               "--seeds", "1", "--out", str(js), "--out", str(csv)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "petals+ws-rr" in out and "failed (reason below)" in out and "cg-bp+ws-rr" in out
    assert "baseline petals+ws-rr failed on this scenario: seed 10000: PlacementError" in out
    data = json.loads(js.read_text())
    status = {r["policy"]: r["status"] for r in data["results"]}
    assert status["petals+ws-rr"].startswith("failed: seed 10000: PlacementError")
    assert status["cg-bp+ws-rr"] == "ok" and status["even+ws-rr"] == "ok"
    margins = {m["baseline"]: m for m in data["margins"]}
    assert margins["petals+ws-rr"]["status"].startswith("failed") and margins["petals+ws-rr"]["reduction"] is None
    assert margins["cg-bp+ws-rr"]["status"] == "ok"
    assert "failed: seed 10000: PlacementError" in csv.read_text()
    assert any("milp" in n and "left out" in n for n in data["meta"]["notes"])


def test_evaluate_default_baselines_include_the_strongest(monkeypatch):
    from distllm_env import registry
    from distllm_env.agents.evaluate import baseline_specs, missing_strong_baselines

    sc = distllm_env.load_scenario("tiny")
    routing = baseline_specs("RequestRouting", sc)
    assert "cg-bp+opt-rr" in routing and "cg-bp+ws-rr-load" in routing
    placement = baseline_specs("BlockPlacement", sc)
    assert "cg-bp+ws-rr" in placement and "milp+ws-rr" not in placement
    # routers/placements registered later (lookahead, cg-bp-tuned) are looked up at run time
    monkeypatch.setitem(registry.ROUTING_POLICIES, "lookahead", registry.ROUTING_POLICIES["ws-rr"])
    monkeypatch.setitem(registry.PLACEMENT_POLICIES, "cg-bp-tuned", registry.PLACEMENT_POLICIES["cg-bp"])
    assert "cg-bp+lookahead" in baseline_specs("RequestRouting", sc)
    assert "cg-bp-tuned+ws-rr" in baseline_specs("BlockPlacement", sc)
    assert missing_strong_baselines("RequestRouting", ["cg-bp+ws-rr", "cg-bp+opt-rr"]) == ["ws-rr-load", "lookahead"]
    assert missing_strong_baselines("BlockPlacement", ["cg-bp-tuned+ws-rr"]) == []


def test_evaluate_notes_an_expensive_strong_baseline(monkeypatch):
    import importlib

    from distllm_env import registry

    ev = importlib.import_module("distllm_env.agents.evaluate")     # the module (the package exports the function)
    if "lookahead" not in registry.ROUTING_POLICIES:
        pytest.skip("lookahead not registered")
    monkeypatch.setattr(ev, "EXPENSIVE_NOTE_REQUESTS", 1)      # tiny has 30 requests: note it as if it were long
    res = ev.evaluate(policy="distllm_env.baselines.ws_rr:WSRRRouter", scenario="tiny", seeds=[10_000],
                      policies=["ws-rr", "lookahead"])
    assert [r["status"] for r in res.compare.results] == ["ok", "ok", "ok"]
    assert any(n.startswith("lookahead is slow on this scenario") for n in res.notes)
    assert not any("not in this table" in n and "lookahead" in n for n in res.notes)


def test_evaluate_user_router_equal_delays_and_note():
    from distllm_env.agents.evaluate import evaluate

    res = evaluate(policy="distllm_env.baselines.ws_rr:WSRRRouter", scenario="paper-clustered", seeds=[10_000],
                   overrides=CLUSTER_OV, policies=["petals", "ws-rr"], allocation_delays="equal:60")
    assert {r["allocation_delay_s"] for r in res.compare.results} == {60.0}
    assert res.meta["allocation_delays_mode"] == "equal:60"
    assert any("ws-rr-load" in n and "not in this table" in n for n in res.notes)
    by = {m["baseline"]: m for m in res.margins}
    # the user's WS-RR against cg-bp+ws-rr, both charged 60 s: the very same run
    assert by["cg-bp+ws-rr"]["reduction"] == 0.0 and by["cg-bp+ws-rr"]["seeds_tied"] == 1


# --------------------------------------------------------------------------------------------------
# learned policies are charged the same delay
# --------------------------------------------------------------------------------------------------

sb3 = pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

SMALL = {"n_steps": 32, "batch_size": 32, "n_epochs": 1}


@pytest.fixture(scope="module")
def tiny_router(tmp_path_factory):
    from distllm_env.agents.train import train

    res = train("distllm/RequestRouting-Tiny-v0", None, "maskable_ppo", 32,
                tmp_path_factory.mktemp("fair") / "router.zip", seed=2, hyperparams=SMALL, progress_bar=False)
    return res.model_path


def test_equal_delay_charges_a_learned_router_like_every_baseline(tiny_router):
    from distllm_env.agents import LearnedEnvPolicy, LearnedModel, LearnedRouter
    from distllm_env.envs.policies import run_episode

    model = LearnedModel(tiny_router)
    router = LearnedRouter(model)
    seeds = [10_000, 10_001]
    res = compare("tiny", [router, "cg-bp+ws-rr", "cg-bp+shortest"], seeds, allocation_delays="equal:60")
    assert {r["allocation_delay_s"] for r in res.per_seed} == {60.0}
    assert res.meta["allocation_delay_per_policy_s"][router.name] == 60.0
    for seed in seeds:
        run = res.runs[(router.name, seed)]
        assert min(_ttfts_s(run)) >= 60.0
        # the shadow env charged the same 60 s: the run equals an env episode with that delay
        env = model.make_env(allocation_delay_s=60.0)
        run_episode(env, LearnedEnvPolicy(model, env), seed=seed)
        assert [(r.request_id, r.start_s, r.completion_s, r.route.to_text()) for r in run.records] == \
            [(r.request_id, r.start_s, r.completion_s, r.route.to_text()) for r in env.unwrapped.sim.finished_records()]
    zero = compare("tiny", [LearnedRouter(model), "cg-bp+ws-rr"], seeds, allocation_delays="zero")
    assert {r["allocation_delay_s"] for r in zero.per_seed} == {0.0}
    assert all(min(_ttfts_s(run)) < 60.0 for run in zero.runs.values())


def test_learned_router_rule_must_match_the_callers_delay(tiny_router):
    from distllm_env.agents import LearnedRouter

    ok = LearnedRouter(tiny_router, allocation_delays="equal:60")
    sim = distllm_env.simulate("tiny", ok, ok, seed=10_000, allocation_delays={"default": 60.0})
    assert sim.summary["allocation_delay_s"] == 60.0 and ok.decisions == len(sim.records)
    wrong = LearnedRouter(tiny_router, allocation_delays="zero")
    with pytest.raises(RuntimeError, match="charges 60 s"):
        distllm_env.simulate("tiny", wrong, wrong, seed=10_000, allocation_delays={"default": 60.0})
    with pytest.raises(ScenarioError, match="allocation_delays"):
        LearnedRouter(tiny_router, allocation_delays="equal:later")


def test_evaluate_model_with_equal_delays(tiny_router, capsys):
    rc = main(["evaluate", "--model", str(tiny_router), "--seeds", "1", "--policies", "ws-rr,opt-rr",
               "--allocation-delays", "equal:60", "--format", "json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["meta"]["allocation_delays_mode"] == "equal:60"
    assert {r["allocation_delay_s"] for r in data["results"]} == {60.0}
    assert len(data["results"]) == 3 and all(r["status"] == "ok" for r in data["results"])


def test_equal_delay_charges_a_learned_placement(tmp_path):
    from distllm_env.agents import LearnedEnvPolicy, LearnedModel, LearnedPlacement
    from distllm_env.agents.train import train
    from distllm_env.envs.policies import run_episode

    res = train("distllm/BlockPlacement-Tiny-v0", None, "maskable_ppo", 32, tmp_path / "pl.zip", seed=1,
                hyperparams=SMALL, progress_bar=False)
    model = LearnedModel(res.model_path)
    pol = LearnedPlacement(model, allocation_delays="equal:60")
    cmp = compare("tiny", [pol, "cg-bp+ws-rr"], [10_000], allocation_delays="equal:60")
    assert {r["allocation_delay_s"] for r in cmp.per_seed} == {60.0}
    env = model.make_env(allocation_delay_s=60.0)
    out = run_episode(env, LearnedEnvPolicy(model, env), seed=10_000)
    run = cmp.runs[(pol.name, 10_000)]
    assert run.placement_result.placement == env.unwrapped.result.placement
    # the env's reward charged the same 60 s as compare did
    assert run.summary["mean_per_token_time_s"] == pytest.approx(-out["return"])

"""The policy trust boundary, the one loader, resolution-time checks and the one option vocabulary
(issue 9 item 1, issue 10 items 9 and 11; README "Trust boundary")."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import distllm_env
from distllm_env import policies as old_policies
from distllm_env import registry
from distllm_env.api import allocation_delay_for, simulate
from distllm_env.cli import main
from distllm_env.compare import compare
from distllm_env.errors import PolicyLoadError, ScenarioError
from distllm_env.imports import load_object
from distllm_env.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
REFUSED = "import paths in scenario files are refused"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


# --------------------------------------------------------------------------------------------------
# 1. scenario files are data
# --------------------------------------------------------------------------------------------------

@pytest.fixture()
def popen_scenario(tmp_path):
    """The issue's exact example: placement subprocess:Popen with options {args: [touch, somefile]}."""
    marker = tmp_path / "somefile"
    raw = yaml.safe_load(load_scenario("tiny").to_yaml())
    raw["policy_defaults"] = {"placement": "subprocess:Popen",
                              "options": {"subprocess:Popen": {"args": ["touch", str(marker)]}}}
    path = tmp_path / "popen.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, marker


def test_scenario_import_path_is_refused_by_simulate_api(popen_scenario):
    path, marker = popen_scenario
    with pytest.raises(ScenarioError) as exc:
        simulate(str(path), seed=0)
    assert exc.value.path == "policy_defaults.placement" and REFUSED in str(exc.value)
    assert "--allow-import" in str(exc.value) and "allow_imports=True" in str(exc.value)
    # explicit policies do not make the scenario's import path acceptable either
    with pytest.raises(ScenarioError):
        simulate(str(path), "even", "shortest", seed=0)
    assert not marker.exists()


@pytest.mark.parametrize("argv", [
    ["simulate", "--scenario", "{path}"],
    ["simulate", "--scenario", "{path}", "--placement", "even", "--routing", "shortest"],
    ["compare", "--scenario", "{path}", "--policies", "even+shortest"],
    ["scenarios", "validate", "{path}"],
])
def test_scenario_import_path_is_refused_by_the_cli(popen_scenario, argv, capsys):
    path, marker = popen_scenario
    assert main([a.format(path=path) for a in argv]) == 2
    line = _one_error_line(capsys)
    assert "policy_defaults.placement" in line and REFUSED in line
    assert not marker.exists()


def test_scenario_import_path_is_refused_by_compare_api(popen_scenario):
    path, marker = popen_scenario
    with pytest.raises(ScenarioError, match=REFUSED):
        compare(str(path), ["even+shortest"], seeds=[0])
    assert not marker.exists()


@pytest.mark.parametrize("env_id", ["distllm/RequestRouting-v0", "distllm/BlockPlacement-v0", "distllm/ClientSplit-v0"])
def test_scenario_import_path_is_refused_by_env_reset(popen_scenario, env_id):
    path, marker = popen_scenario
    with pytest.raises(ScenarioError) as exc:
        env = gym.make(env_id, scenario=str(path))
        env.reset(seed=0)
    assert exc.value.path == "policy_defaults.placement"
    assert not marker.exists()


@pytest.mark.parametrize("field", ["placement", "routing"])
def test_set_override_is_data_too(field, capsys):
    assert main(["simulate", "--scenario", "tiny", "--set", f"policy_defaults.{field}=os:system"]) == 2
    line = _one_error_line(capsys)
    assert f"policy_defaults.{field}" in line and REFUSED in line and f"--{field}/--allow-import" in line


def test_unknown_scenario_policy_name_is_a_scenario_error():
    with pytest.raises(ScenarioError) as exc:
        simulate("tiny", overrides=["policy_defaults.routing=teleport"])
    assert exc.value.path == "policy_defaults.routing" and "teleport" in str(exc.value)


def test_opt_in_allows_a_scenario_import_path():
    """With allow_imports=True (CLI --allow-import) the scenario may name an import path; the result
    equals the registered name's (same class)."""
    over = ["policy_defaults.placement=distllm_env.baselines.simple:EvenPlacement",
            "policy_defaults.routing=distllm_env.baselines.simple.ShortestRouter", "workload.num_requests=8"]
    with pytest.raises(ScenarioError):
        simulate("tiny", overrides=over)
    got = simulate("tiny", overrides=over, allow_imports=True)
    ref = simulate("tiny", "even", "shortest", overrides=["workload.num_requests=8"])
    assert [r.route for r in got.records] == [r.route for r in ref.records]
    assert got.summary["mean_per_token_time_s"] == ref.summary["mean_per_token_time_s"]
    env = gym.make("distllm/RequestRouting-Tiny-v0", overrides=over[:1], config={"allow_imports": True})
    env.reset(seed=0)
    args = ["simulate", "--scenario", "tiny"] + [x for o in over for x in ("--set", o)]
    assert main(args) == 2
    assert main(args + ["--allow-import"]) == 0


def test_explicit_import_paths_stay_allowed():
    got = simulate("tiny", "distllm_env.baselines.simple:EvenPlacement", "distllm_env.baselines.simple.ShortestRouter",
                   overrides=["workload.num_requests=8"])
    ref = simulate("tiny", "even", "shortest", overrides=["workload.num_requests=8"])
    assert got.placement_name == "even" and got.routing_name == "shortest"
    assert [r.route for r in got.records] == [r.route for r in ref.records]


# --------------------------------------------------------------------------------------------------
# 2. one loader
# --------------------------------------------------------------------------------------------------

def test_load_object_forms_and_alias():
    from distllm_env.baselines.simple import EvenPlacement

    assert load_object("distllm_env.baselines.simple:EvenPlacement", field="x") is EvenPlacement
    assert load_object("distllm_env.baselines.simple.EvenPlacement", field="x") is EvenPlacement
    assert load_object("distllm_env.baselines.simple:EvenPlacement.place", field="x") is EvenPlacement.place
    assert old_policies.load_object is load_object


@pytest.mark.parametrize("path, fragment", [
    ("no_such_module_xyz:Thing", "cannot import module 'no_such_module_xyz'"),
    ("distllm_env.baselines.simple:Nope", "has no attribute 'Nope'"),
    ("plainname", "not a known name or a 'module:Class' import path"),
    (":Thing", "not a known name"),
    ("mod:", "not a known name"),
])
def test_load_object_errors_are_one_line_naming_the_field(path, fragment):
    with pytest.raises(PolicyLoadError) as exc:
        load_object(path, field="--placement")
    text = str(exc.value)
    assert text.startswith("--placement: ") and fragment in text and "\n" not in text


def test_no_other_copy_of_the_loader():
    """importlib.import_module appears only in imports.py (and in two fixed tables of internal modules:
    the CLI's sub-commands and the agents package's lazy exports)."""
    fixed_tables = {"distllm_env/imports.py", "distllm_env/cli.py", "agents/__init__.py"}
    hits = []
    for sub in ("distllm_env", "baselines", "agents"):
        for f in (ROOT / sub).rglob("*.py"):
            if "import_module(" in f.read_text() and str(f.relative_to(ROOT)) not in fixed_tables:
                hits.append(str(f.relative_to(ROOT)))
    assert hits == []


def test_registry_rename_keeps_the_old_module():
    for name in old_policies.__all__:
        if name != "load_object":
            assert getattr(old_policies, name) is getattr(registry, name)
    assert "deprecated" in old_policies.__doc__.lower()


# --------------------------------------------------------------------------------------------------
# 3. a resolved policy is checked at resolution time
# --------------------------------------------------------------------------------------------------

def test_simulate_placement_without_place_exits_2(capsys):
    assert main(["simulate", "--scenario", "tiny", "--placement", "os:getcwd"]) == 2
    assert _one_error_line(capsys) == "distllm-env: error: --placement: os:getcwd has no place(instance, rng) method"


def test_simulate_routing_without_route_exits_2(capsys):
    assert main(["simulate", "--scenario", "tiny", "--placement", "even", "--routing", "os:getcwd"]) == 2
    assert _one_error_line(capsys) == ("distllm-env: error: --routing: os:getcwd has no route(request, view, rng) "
                                       "method")


def test_api_and_compare_check_methods():
    with pytest.raises(PolicyLoadError, match="has no place"):
        simulate("tiny", "os:getcwd", "shortest")
    with pytest.raises(PolicyLoadError, match="has no route"):
        simulate("tiny", "even", object())
    with pytest.raises(PolicyLoadError, match="has no route"):
        compare("tiny", ["even+os:getcwd"], seeds=[0])


# --------------------------------------------------------------------------------------------------
# 4. one option vocabulary, every registered policy
# --------------------------------------------------------------------------------------------------

#: (kind, name) -> (option, bad value as --set text); every policy that takes options is listed
BAD_OPTION = {
    ("placement", "even"): ("sessions", "0"),
    ("placement", "random"): ("sessions", "0"),
    ("placement", "petals"): ("max_rounds", "0"),
    ("placement", "cg-bp"): ("sessions", "0"),
    ("placement", "opt-order"): ("sessions", "0"),
    ("placement", "opt-number"): ("sessions", "-3"),
    ("placement", "milp"): ("sessions", "0"),
    ("routing", "round-robin"): ("k", "0"),
    ("routing", "petals"): ("variant", "bogus"),
    ("routing", "ws-rr"): ("last_hop_s", "-1"),
    ("routing", "ws-rr-load"): ("weight", "-1"),
    ("routing", "opt-rr"): ("last_hop_s", "-1"),
    ("routing", "rr-ilp"): ("method", "bogus"),
    ("routing", "lookahead"): ("k", "0"),
    ("placement", "cg-bp-tuned"): ("train_seeds", "0"),
}
ALL_POLICIES = [("placement", n) for n in registry.PLACEMENT_POLICIES] + \
               [("routing", n) for n in registry.ROUTING_POLICIES]


def _takes_options(kind: str, name: str) -> bool:
    table = registry.PLACEMENT_POLICIES if kind == "placement" else registry.ROUTING_POLICIES
    cls = load_object(table[name], field="test")
    return any(p.name != "self" for p in inspect.signature(cls).parameters.values())


@pytest.mark.parametrize("kind, name", ALL_POLICIES)
def test_every_policy_with_options_is_in_the_table(kind, name):
    assert _takes_options(kind, name) == ((kind, name) in BAD_OPTION)


def _simulate_argv(kind: str, name: str, option: str, value: str) -> list[str]:
    placement, routing = (name, "shortest") if kind == "placement" else ("even", name)
    return ["simulate", "--scenario", "tiny", "--placement", placement, "--routing", routing,
            "--set", f"policy_defaults.options.{name}.{option}={value}"]


@pytest.mark.parametrize("kind, name", sorted(BAD_OPTION))
def test_bad_option_value_exits_2_naming_the_path(kind, name, capsys):
    option, value = BAD_OPTION[(kind, name)]
    assert main(_simulate_argv(kind, name, option, value)) == 2
    line = _one_error_line(capsys)
    assert f"policy_defaults.options.{name}.{option}:" in line


@pytest.mark.parametrize("kind, name", ALL_POLICIES)
def test_unknown_option_exits_2_naming_the_path(kind, name, capsys):
    assert main(_simulate_argv(kind, name, "no_such_option", "1")) == 2
    line = _one_error_line(capsys)
    assert f"policy_defaults.options.{name}.no_such_option: unknown option" in line


@pytest.mark.parametrize("kind, name", sorted(BAD_OPTION))
def test_bad_option_from_python_is_a_scenario_error(kind, name):
    option, value = BAD_OPTION[(kind, name)]
    make = registry.make_placement if kind == "placement" else registry.make_routing
    bad = yaml.safe_load(value)
    with pytest.raises(ScenarioError) as exc:
        make(name, None, {option: bad})
    assert exc.value.path == f"policy_defaults.options.{name}.{option}"


SPLIT_NAMES = ["dp", "prefix-greedy", "ratio-greedy", "server-only", "exhaustive"]


def test_split_names_are_all_covered():
    from distllm_env.baselines.splitllm import SPLIT_POLICIES

    assert sorted(SPLIT_POLICIES) == sorted(SPLIT_NAMES)


@pytest.mark.parametrize("name", SPLIT_NAMES)
@pytest.mark.parametrize("option, value, fragment", [("budget_steps", "0", "expected an integer ≥ 1"),
                                                     ("rounded", "maybe", "expected true or false"),
                                                     ("no_such_option", "1", "unknown option")])
def test_split_policy_options(name, option, value, fragment, capsys):
    argv = ["split", "--scenario", "splitllm-edge", "--policies", name, "--requests", "3",
            "--set", f"policy_defaults.options.{name}.{option}={value}"]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert f"policy_defaults.options.{name}.{option}: {fragment}" in line
    from distllm_env.baselines.splitllm import make_split_policy

    with pytest.raises(ScenarioError) as exc:
        make_split_policy(name, **{option: yaml.safe_load(value)})
    assert exc.value.path == f"policy_defaults.options.{name}.{option}"


# --------------------------------------------------------------------------------------------------
# 5. single sources: families and allocation delays
# --------------------------------------------------------------------------------------------------

def test_family_rule_and_delay_lookup():
    for preset, (p, r) in registry.PRESETS.items():
        assert registry.family_of(p, r) == registry.FAMILIES[preset] == registry.preset_family(preset)
    assert registry.family_of("even", "shortest") == "default"
    delays = {"petals": 2.5, "default": 0.25}
    assert registry.family_delay_s(delays, "petals") == 2.5
    assert registry.family_delay_s(delays, "proposed") == 0.25
    assert registry.family_delay_s({}, "petals") == 0.0
    sc = load_scenario("tiny", ["simulator.allocation_delay_s.petals=1.5"])
    assert allocation_delay_for(sc, "petals") == 1.5
    assert allocation_delay_for(sc, "petals", {"default": 0.5}) == 0.5


def test_env_and_simulate_charge_the_same_delay():
    over = ["simulator.allocation_delay_s.proposed=0.75", "workload.num_requests=4"]
    res = simulate("tiny", "cg-bp", "ws-rr", overrides=over)
    assert res.family == "proposed"
    env = gym.make("distllm/RequestRouting-Tiny-v0", overrides=over, config={"allocation_delay_family": "proposed"})
    assert res.summary["allocation_delay_s"] == env.unwrapped.allocation_delay_s() == 0.75


def test_no_other_copy_of_the_delay_lookup_or_family_rule():
    pattern = re.compile(r"""\.get\(\s*["']default["']\s*,\s*0""")
    hits = []
    for sub in ("distllm_env", "baselines", "agents"):
        for f in (ROOT / sub).rglob("*.py"):
            text = f.read_text()
            if f.name != "registry.py" and (pattern.search(text) or "FAMILIES.get(" in text):
                hits.append(str(f.relative_to(ROOT)))
    assert hits == []


# --------------------------------------------------------------------------------------------------
# 6. env config and seeds, every registered env id
# --------------------------------------------------------------------------------------------------

ENV_IDS = sorted(i for i in gym.registry if i.startswith("distllm/"))


def test_env_ids_are_registered():
    assert distllm_env and len(ENV_IDS) >= 3


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_accepts_numpy_seeds_and_validates_config(env_id):
    env = gym.make(env_id)
    obs_np, info_np = env.reset(seed=np.int64(3))
    obs, info = env.reset(seed=3)
    assert info_np["scenario_seed"] == info["scenario_seed"] == 3
    assert all(np.array_equal(obs_np[k], obs[k]) for k in obs)
    for bad in (-1, 1.5, np.float64(3.0), "3", True):
        with pytest.raises(ScenarioError) as exc:
            env.reset(seed=bad)
        assert exc.value.path == "seed"
    with pytest.raises(ScenarioError) as exc:
        gym.make(env_id, config={"no_such_key": 1})
    assert exc.value.path == "config.no_such_key"
    with pytest.raises(ScenarioError) as exc:
        gym.make(env_id, config={"allow_imports": "yes"})
    assert exc.value.path == "config.allow_imports"
    with pytest.raises(ScenarioError) as exc:
        gym.make(env_id, config={"max_blocks": 0})
    assert exc.value.path == "config.max_blocks"


def test_evaluate_opt_in_allows_a_scenario_import_path(capsys):
    """``evaluate`` pairs a routing policy with the scenario's default placement; an import path there
    is refused (exit 2, one line) unless ``--allow-import`` / ``allow_imports=True``, and then gives the
    same numbers as the registered name."""
    from distllm_env.agents.evaluate import evaluate

    over = ["policy_defaults.placement=distllm_env.baselines.simple:EvenPlacement", "workload.num_requests=8"]
    router = "distllm_env.baselines.simple:ShortestRouter"
    with pytest.raises(ScenarioError) as exc:
        evaluate(policy=router, scenario="tiny", overrides=over, seeds=[10_000], policies=["shortest"])
    assert exc.value.path == "policy_defaults.placement" and REFUSED in str(exc.value)
    got = evaluate(policy=router, scenario="tiny", overrides=over, seeds=[10_000], policies=["shortest"],
                   allow_imports=True)
    ref = evaluate(policy=router, scenario="tiny", overrides=["workload.num_requests=8"], seeds=[10_000],
                   policies=["even+shortest"])
    assert [m["baseline_mean_s"] for m in got.margins] == [m["baseline_mean_s"] for m in ref.margins]
    assert got.margins[0]["reduction"] == 0.0      # the same router on the same placement
    args = ["evaluate", "--policy", router, "--scenario", "tiny", "--seeds", "1", "--policies", "shortest"]
    args += [x for o in over for x in ("--set", o)]
    assert main(args) == 2
    assert REFUSED in _one_error_line(capsys)
    assert main(args + ["--allow-import"]) == 0


def test_validate_refuses_options_simulate_would_refuse(capsys):
    """Found by benchmarks/fuzz.py ('inconsistent'): `scenarios validate` accepted an unknown option of
    a registered policy the defaults do not use, which `simulate --placement milp` then refused."""
    from distllm_env.cli import main

    bad = ["--set", "policy_defaults.options.milp.fuzz_kwarg=1"]
    assert main(["scenarios", "validate", "paper-gtsce", *bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "policy_defaults.options.milp.fuzz_kwarg" in err[0]
    assert main(["simulate", "--scenario", "paper-gtsce", "--placement", "milp", "--routing", "shortest", *bad]) == 2
    # a value only one of two same-named classes accepts is fine (petals: placement and router)
    assert main(["scenarios", "validate", "paper-gtsce", "--set", "policy_defaults.options.petals.rebalance=true"]) == 0


def test_integer_options_have_a_maximum(capsys):
    """Found by benchmarks/fuzz.py: CG-BP's `sessions: 18446744073709551616` raised OverflowError deep in
    the block-count rule; every integer option is now bounded by limits.MAX_OPTION_INT."""
    from distllm_env.cli import main

    assert main(["simulate", "--scenario", "tiny", "--set", "policy_defaults.options.cg-bp.sessions=18446744073709551616"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "policy_defaults.options.cg-bp.sessions" in err[0] and "1000000000" in err[0]

"""The agent zoo and the usability of learning (issue 13 items 4 and 5; docs/agents.md "The agent zoo").

The shipped zoo entries are checked by the parametrised tests (sidecar = recipe, env id registered,
``evaluate --model zoo:NAME`` runs).  The same code paths also run on a model trained here for a few
hundred steps from a test recipe and registered through a zoo directory override (no fake agent is
shipped).  That one training run also writes checkpoints and the ``--eval-freq`` best model, whose
sidecars and fixed validation seeds are checked.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("stable_baselines3")

from distllm_env.agents import zoo  # noqa: E402
from distllm_env.agents.envs import EnvFactory, FixedSeeds, check_env_id  # noqa: E402
from distllm_env.agents.sidecar import ModelMismatchError, detect_algo, read_sidecar  # noqa: E402
from distllm_env.cli import main  # noqa: E402
from distllm_env.errors import DistLLMError, ScenarioError  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

RECIPE = """\
description: test-only recipe, a few hundred PPO steps on the tiny scenario
env_id: distllm/RequestRouting-v0
scenario: tiny
algo: ppo
seed: 3
hyperparams:
  policy: MlpPolicy
  env_wrapper:
    - distllm_env.agents.wrappers.RoutingFeatures: {}
  n_envs: 1
  n_timesteps: 256
  n_steps: 64
  batch_size: 32
  n_epochs: 1
  policy_kwargs: "dict(net_arch=[16])"
"""
NAME = "tiny-router"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tmp zoo directory with the recipe and the model trained from it (plus checkpoints and the
    validation best model, written next to the run's output)."""
    from distllm_env.agents.train import train_recipe

    d = tmp_path_factory.mktemp("zoo")
    (d / f"{NAME}.yml").write_text(RECIPE)
    run = tmp_path_factory.mktemp("run")
    res = train_recipe(NAME, run / "m.zip", zoo_dir=d, progress_bar=False, checkpoint_freq=128, eval_freq=64,
                       eval_episodes=2)
    shutil.copy(res.model_path, d / f"{NAME}.zip")
    shutil.copy(res.sidecar_path, d / f"{NAME}.json")
    return d, run, res


def _check_entry(name: str, zoo_dir) -> None:
    """A zoo entry's sidecar matches its recipe, and its env id is registered."""
    model = zoo.model_path(name, zoo_dir)
    side = read_sidecar(model)
    assert check_env_id(side["env_id"]) == side["env_id"]
    recipe = zoo.find_recipe(name, zoo_dir)
    assert side["env_id"] == recipe.env_id
    assert side["algo"] == recipe.algo and side["seed"] == recipe.seed
    assert side["recipe"]["name"] == name and side["recipe"]["sha256"] == recipe.sha256, \
        f"{name}: the shipped model was not trained from the committed recipe (retrain it)"
    assert side["hyperparams"]["entry"] == recipe.hyperparams
    assert recipe.seed < 10_000 and side["timesteps"] >= 1


SHIPPED = sorted(p.stem for p in zoo.ZOO_DIR.glob("*.zip") if p.with_suffix(".json").is_file())  # what ships


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_entry_sidecar_matches_its_recipe(name):
    _check_entry(name, [zoo.ZOO_DIR])


@pytest.mark.parametrize("name", SHIPPED)
def test_evaluate_shipped_zoo_model_runs(name, capsys):
    base = "cg-bp" if read_sidecar(zoo.model_path(name))["env_id"].startswith("distllm/BlockPlacement") else "ws-rr"
    assert main(["evaluate", "--model", f"zoo:{name}", "--seeds", "2", "--policies", base]) == 0
    assert f"learned:{name}" in capsys.readouterr().out


def test_every_recipe_in_the_shipped_zoo_parses():
    for name, path in zoo.recipes([zoo.ZOO_DIR]).items():
        rec = zoo.load_recipe(path)
        assert rec.name == name and rec.seed < 10_000 and rec.n_timesteps >= 1


def test_trained_entry_sidecar_matches_its_recipe(trained):
    d, _, res = trained
    _check_entry(NAME, d)
    assert res.sidecar["description"].startswith("test-only recipe")
    assert res.timesteps == 256


def test_cli_recipe_file_retrains_the_same_model(trained, tmp_path, capsys):
    """``train --recipe FILE.yml`` trains exactly the recipe: the same weights as the zoo entry's run."""
    import torch
    from stable_baselines3 import PPO

    d, _, res = trained
    out = tmp_path / "again.zip"
    assert main(["train", "--recipe", str(d / f"{NAME}.yml"), "--out", str(out), "--no-progress", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["recipe"] == NAME and summary["timesteps"] == 256 and summary["seed"] == 3
    a = PPO.load(str(out), device="cpu").policy.state_dict()
    b = PPO.load(str(d / f"{NAME}.zip"), device="cpu").policy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_sidecar(out)["recipe"] == res.sidecar["recipe"]


def test_zoo_dir_override_by_env_var_and_listing(trained, monkeypatch, capsys):
    d, _, _ = trained
    monkeypatch.setenv(zoo.ZOO_DIR_ENV, str(d))
    assert zoo.zoo_dirs()[0] == d and zoo.zoo_dirs()[-1] == zoo.ZOO_DIR
    assert main(["zoo", "list", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    row = rows[NAME]
    assert row["env_id"] == "distllm/RequestRouting-v0" and row["scenario"] == "tiny" and row["algo"] == "ppo"
    assert row["size_bytes"] == (d / f"{NAME}.zip").stat().st_size
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert NAME in out and "test-only recipe" in out


def test_evaluate_zoo_model_on_two_seeds(trained, monkeypatch, capsys):
    import torch

    d, _, _ = trained
    monkeypatch.setenv(zoo.ZOO_DIR_ENV, str(d))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    assert main(["evaluate", "--model", f"zoo:{NAME}", "--seeds", "2", "--policies", "ws-rr", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    pols = {r["policy"] for r in out["results"]}
    assert f"learned:{NAME}" in pols and len(out["per_seed"]) == 4
    assert out["meta"]["model"]["model"] == str(d / f"{NAME}.zip")
    threads = torch.get_num_threads()
    torch.set_num_threads(before)
    assert threads == 1   # the CLI sets one torch thread, as train does (docs/agents.md "Torch threads")


def test_from_zoo_and_unknown_names(trained):
    from distllm_env.agents import LearnedPlacement, LearnedRouter

    d, _, _ = trained
    router = LearnedRouter.from_zoo(NAME, zoo_dir=d)
    assert router.name == f"learned:{NAME}" and router.model.env_id == "distllm/RequestRouting-v0"
    with pytest.raises(ScenarioError, match=r"^model: .*trained on distllm/RequestRouting-v0"):
        LearnedPlacement.from_zoo(NAME, zoo_dir=d)
    with pytest.raises(ScenarioError) as exc:
        LearnedRouter.from_zoo("no-such", zoo_dir=d)
    assert "unknown zoo model 'no-such'" in str(exc.value) and f"'{NAME}'" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_cli_unknown_zoo_name_is_one_line(trained, capsys):
    d, _, _ = trained
    assert main(["train", "--zoo", "nope", "--zoo-dir", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown zoo recipe 'nope'" in err and NAME in err
    assert main(["evaluate", "--model", "zoo:nope"]) == 2
    assert "unknown zoo model 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("extra,flag", [(["--seed", "4"], "--seed"), (["--env", "distllm/RequestRouting-v0"], "--env"),
                                        (["--timesteps", "5"], "--timesteps"), (["--set", "a=1"], "--set"),
                                        (["--hyperparams", "n_steps=8"], "--hyperparams")])
def test_train_recipe_refuses_options_that_change_it(trained, capsys, extra, flag):
    d, _, _ = trained
    assert main(["train", "--zoo", NAME, "--zoo-dir", str(d), *extra]) == 2
    err = capsys.readouterr().err
    assert f"{flag}: a recipe fixes" in err


def test_train_without_env_or_recipe_is_refused(capsys):
    assert main(["train", "--out", "x.zip"]) == 2
    assert "--env: required" in capsys.readouterr().err


@pytest.mark.parametrize("edit,path", [
    (lambda t: t.replace("seed: 3", "seed: 10000"), "seed"),
    (lambda t: t.replace("seed: 3", "seed: 3\nwrappers: []"), "wrappers"),
    (lambda t: t.replace("  n_timesteps: 256\n", ""), "hyperparams.n_timesteps"),
    (lambda t: t.replace("env_id: distllm/RequestRouting-v0", "env_id: distllm/Nope-v0"), "env_id"),
    (lambda t: t.replace("algo: ppo", "algo: sac"), "algo"),
    (lambda t: t.replace("description: test-only recipe, a few hundred PPO steps on the tiny scenario\n", ""),
     "description"),
])
def test_bad_recipes_name_the_field(tmp_path, edit, path):
    f = tmp_path / "bad.yml"
    f.write_text(edit(RECIPE))
    with pytest.raises(ScenarioError) as exc:
        zoo.load_recipe(f)
    assert exc.value.path == f"bad.yml.{path}"


def test_recipe_is_data_not_code(tmp_path):
    f = tmp_path / "evil.yml"
    f.write_text(RECIPE.replace("distllm_env.agents.wrappers.RoutingFeatures", "os.system"))
    rec = zoo.load_recipe(f)          # parsing imports nothing
    with pytest.raises(ScenarioError, match="allow-list"):
        rec.resolved_hyperparams()


# -- checkpoints, best model, validation seeds --------------------------------------------------------------


def test_checkpoints_and_best_model_have_sidecars(trained):
    from distllm_env.agents import LearnedModel

    _, run, res = trained
    ckpts = sorted((run / "m_checkpoints").glob("*.zip"))
    assert [p.name for p in ckpts] == ["m_128_steps.zip", "m_256_steps.zip"]
    for p in ckpts:
        side = read_sidecar(p)
        assert side["checkpoint"] is True and side["timesteps"] == int(p.stem.split("_")[1])
        assert side["recipe"] == res.sidecar["recipe"] and side["observation_space"] == res.sidecar["observation_space"]
    best = run / "m_eval" / "best_model.zip"
    side = read_sidecar(best)
    assert side["best_of_validation"]["seeds"] == [9000, 9001]
    assert side["timesteps"] in (64, 128, 192, 256)
    lm = LearnedModel(best)            # loads like any trained model
    assert lm.env_id == "distllm/RequestRouting-v0"


def test_every_validation_evaluation_plays_the_same_seeds(trained):
    from distllm_env.agents.train import TRAIN_SEED_RANGE, VALIDATION_SEED_RANGE, validation_seeds

    _, _, res = trained
    assert len(res.evaluated_seeds) == 4                       # eval_freq 64 over 256 steps
    assert all(s == [9000, 9001] for s in res.evaluated_seeds)
    assert res.sidecar["validation_seeds"] == [9000, 9001] == validation_seeds(2)
    lo, hi = VALIDATION_SEED_RANGE
    assert TRAIN_SEED_RANGE[1] <= lo and hi <= 10_000          # disjoint from training and held-out seeds
    with pytest.raises(ScenarioError, match="--eval-episodes"):
        validation_seeds(0)


def test_fixed_seeds_rewind_replays_the_same_episodes():
    env = EnvFactory("distllm/RequestRouting-v0", "tiny", seed_range=None, fixed_seeds=[9000, 9001])()
    assert isinstance(env, FixedSeeds)
    env.reset()
    env.reset()
    env.reset()
    assert env.played == [9000, 9001, 9000]
    env.rewind()
    env.reset(seed=77)                 # the caller's seed does not change the validation episodes
    assert env.played == [9000]
    assert env.unwrapped.instance.seed == 9000


# -- plain SB3 zips without a sidecar ------------------------------------------------------------------------


def test_plain_zip_without_sidecar_is_accepted_with_env(trained, tmp_path, capsys):
    from distllm_env.agents import LearnedModel, LearnedRouter
    from distllm_env.agents.evaluate import evaluate

    d, _, _ = trained
    plain = tmp_path / "plain.zip"
    shutil.copy(d / f"{NAME}.zip", plain)      # trained behind RoutingFeatures, no sidecar
    assert detect_algo(plain) == "ppo"
    with pytest.raises(ModelMismatchError, match=r"--env ID"):
        LearnedModel(plain)
    lm = LearnedModel(plain, env_id="distllm/RequestRouting-v0", scenario="tiny")
    assert lm.sidecar["sidecar"] == "synthesized"
    assert [w["path"] for w in lm.sidecar["wrappers"]] == ["distllm_env.agents.wrappers:RoutingFeatures"]
    assert lm.sidecar["observation_space"] == read_sidecar(d / f"{NAME}.zip")["observation_space"]
    assert isinstance(LearnedRouter.load(plain, env_id="distllm/RequestRouting-v0", scenario="tiny"), LearnedRouter)
    # the same decisions as the model with its sidecar: identical per-seed results
    a = evaluate(plain, "tiny", [10_000, 10_001], env_id="distllm/RequestRouting-v0", policies=["ws-rr"])
    b = evaluate(d / f"{NAME}.zip", "tiny", [10_000, 10_001], policies=["ws-rr"])
    key = lambda r: (r["seed"], r["mean_per_token_time_s"])  # noqa: E731
    assert [key(r) for r in a.compare.per_seed if r["policy"].startswith("learned:")] == \
        [key(r) for r in b.compare.per_seed if r["policy"].startswith("learned:")]
    assert main(["evaluate", "--model", str(plain), "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--env ID" in err
    assert main(["evaluate", "--model", str(plain), "--env", "distllm/RequestRouting-v0", "--scenario", "tiny",
                 "--seeds", "1", "--policies", "ws-rr"]) == 0


def test_plain_zip_that_fits_no_wrapper_names_the_difference(trained, tmp_path):
    from distllm_env.agents import LearnedModel

    d, _, _ = trained
    plain = tmp_path / "plain.zip"
    shutil.copy(d / f"{NAME}.zip", plain)
    with pytest.raises(ModelMismatchError) as exc:
        LearnedModel(plain, env_id="distllm/BlockPlacement-v0", scenario="tiny")
    assert "does not fit distllm/BlockPlacement-v0" in str(exc.value)
    assert isinstance(exc.value, DistLLMError)


def test_not_a_model_zip_is_refused(tmp_path):
    f = tmp_path / "x.zip"
    f.write_bytes(b"not a zip")
    with pytest.raises(ModelMismatchError, match="not a stable-baselines3 model zip"):
        detect_algo(f)


def test_zoo_models_ship_in_the_wheel():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "distllm_env.agents.zoo" in cfg["packages"]
    pats = cfg["package-data"]["distllm_env.agents.zoo"]
    assert {"*.yml", "*.zip", "*.json"} <= set(pats)
    assert zoo.ZOO_DIR == ROOT / "agents" / "zoo"


# -- new-user findings (issue 13 polish) -------------------------------------------------------------------


def test_train_zoo_into_zoo_dir_then_list_and_evaluate_from_it(tmp_path, monkeypatch, capsys):
    """``train --zoo NAME --zoo-dir D`` writes D/NAME.zip (not the working directory); ``zoo list`` then shows
    it with its size, first (search order); ``evaluate --zoo-dir D`` finds it; a second run says it overwrote."""
    d = tmp_path / "myzoo"
    d.mkdir()
    (d / f"{NAME}.yml").write_text(RECIPE)
    monkeypatch.chdir(tmp_path)
    assert main(["zoo", "list", "--zoo-dir", str(d), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == NAME and rows[0]["size_bytes"] is None      # own directory first, not trained yet
    assert [r["name"] for r in rows[1:]] == sorted(r["name"] for r in rows[1:])
    assert main(["evaluate", "--model", f"zoo:{NAME}", "--zoo-dir", str(d), "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--model: recipe '{NAME}' has no trained model" in err
    assert f"distllm-env train --zoo {NAME} --zoo-dir {d}" in err
    assert main(["train", "--zoo", NAME, "--zoo-dir", str(d), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert (d / f"{NAME}.zip").is_file() and (d / f"{NAME}.json").is_file() and not (tmp_path / f"{NAME}.zip").exists()
    assert f"wrote {d / NAME}.zip" in out and "not the best" in out and "overwrote" not in out
    assert main(["zoo", "list", "--zoo-dir", str(d), "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["name"] == NAME and row["size_bytes"] == (d / f"{NAME}.zip").stat().st_size
    assert main(["evaluate", "--model", f"zoo:{NAME}", "--zoo-dir", str(d), "--seeds", "1", "--policies", "ws-rr",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["meta"]["model"]["model"] == str(d / f"{NAME}.zip")
    assert main(["train", "--zoo", NAME, "--zoo-dir", str(d), "--no-progress"]) == 0
    assert f"overwrote {d / NAME}.zip" in capsys.readouterr().out


def test_shipped_recipe_without_model_says_how_to_train_it(capsys):
    """``swarm-clustered-churn`` ships as a recipe only: the API error names the field ``model`` (not a CLI
    flag) and says how to train it; the CLI keeps ``--model``."""
    from distllm_env.agents import LearnedRouter

    assert "swarm-clustered-churn" in zoo.recipes() and "swarm-clustered-churn" not in zoo.models()
    with pytest.raises(ScenarioError) as exc:
        LearnedRouter.from_zoo("swarm-clustered-churn")
    assert exc.value.path == "model"
    assert "recipe 'swarm-clustered-churn' has no trained model" in str(exc.value)
    assert "distllm-env train --zoo swarm-clustered-churn --zoo-dir DIR" in str(exc.value)
    with pytest.raises(ScenarioError) as exc:
        LearnedRouter.from_zoo("placement-sessions")       # a placement model
    assert exc.value.path == "model" and "not on a RequestRouting env" in str(exc.value)
    assert main(["evaluate", "--model", "zoo:swarm-clustered-churn", "--seeds", "1"]) == 2
    assert "--model: recipe 'swarm-clustered-churn' has no trained model" in capsys.readouterr().err


def test_train_output_names_rounding_time_limit_and_extra_files(tmp_path, capsys):
    base = ["train", "--env", "distllm/RequestRouting-Tiny-v0", "--algo", "ppo", "--no-progress",
            "--hyperparams", "n_steps=64", "batch_size=64", "n_epochs=1", "n_envs=1"]
    assert main(base + ["--timesteps", "10", "--out", str(tmp_path / "a.zip")]) == 0
    out = capsys.readouterr().out
    assert "for 64 steps (10 asked, rounded up to whole rollouts of n_steps × n_envs = 64 steps)" in out
    assert read_sidecar(tmp_path / "a.zip")["timesteps"] == 64
    assert main(base + ["--timesteps", "640", "--time-limit", "1e-9", "--out", str(tmp_path / "b.zip"),
                        "--checkpoint-freq", "1", "--format", "json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["stopped_by_time_limit"] is True and js["requested_timesteps"] == 640 and js["timesteps"] < 640
    assert js["checkpoint_dir"] == str(tmp_path / "b_checkpoints") and js["best_model"] is None
    assert main(base + ["--timesteps", "640", "--time-limit", "1e-9", "--out", str(tmp_path / "b.zip"),
                        "--checkpoint-freq", "1"]) == 0
    out = capsys.readouterr().out
    assert "(stopped by time limit after " in out and " of 640 steps)" in out
    assert f"overwrote {tmp_path / 'b.zip'}" in out and f"{tmp_path / 'b_checkpoints'}/" in out


def test_plain_flattened_model_without_sidecar(tmp_path, capsys):
    """A plain SB3 model trained behind gymnasium's FlattenObservation: found among the candidates, or named
    explicitly (``wrappers=`` / ``--wrapper``); a wrong explicit list is refused with the difference."""
    import gymnasium as gym
    import torch
    from gymnasium.wrappers import FlattenObservation
    from stable_baselines3 import PPO

    from distllm_env.agents import LearnedModel, LearnedRouter

    env_id = "distllm/RequestRouting-Tiny-v0"
    torch.set_num_threads(1)
    env = FlattenObservation(gym.make(f"distllm_env:{env_id}"))
    PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu").learn(64).save(tmp_path / "f.zip")
    flat = [{"path": "gymnasium.wrappers:FlattenObservation", "kwargs": {}}]
    assert LearnedModel(tmp_path / "f.zip", env_id=env_id).sidecar["wrappers"] == flat
    lm = LearnedModel(tmp_path / "f.zip", env_id=env_id, wrappers=["gymnasium.wrappers.FlattenObservation"])
    assert lm.sidecar["wrappers"] == flat
    obs, _ = lm.make_env().reset(seed=10_000)
    assert obs.shape == lm.model.observation_space.shape
    with pytest.raises(ModelMismatchError, match=r"with wrappers \[\]: space: Box vs Dict"):
        LearnedModel(tmp_path / "f.zip", env_id=env_id, wrappers=[])
    with pytest.raises(ScenarioError, match=r"^wrappers\.0: 'mymod:W' is not in the allow-list"):
        LearnedRouter.load(tmp_path / "f.zip", env_id=env_id, wrappers=["mymod.W"])
    with pytest.raises(ScenarioError, match=r"^wrappers: only for a plain SB3 zip"):
        LearnedModel(tmp_path / "f.zip", wrappers=["gymnasium.wrappers.FlattenObservation"])
    assert main(["evaluate", "--model", str(tmp_path / "f.zip"), "--env", env_id, "--wrapper",
                 "gymnasium.wrappers.FlattenObservation", "--seeds", "1", "--policies", "ws-rr", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["meta"]["model"]["env_id"] == env_id
    assert main(["evaluate", "--model", str(tmp_path / "f.zip"), "--env", env_id, "--wrapper", "mymod.W",
                 "--seeds", "1"]) == 2
    assert "--wrapper.0: 'mymod:W' is not in the allow-list" in capsys.readouterr().err

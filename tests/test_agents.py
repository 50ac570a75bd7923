"""Agents: hyper-parameter YAML, wrappers, SB3 training smoke runs, save → load → predict, the sidecar
and its refusals, learned policies inside the simulator, evaluate and assert_beats with a model."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest

import distllm_env  # noqa: F401  (registers the ids)
from distllm_env.agents.hyperparams import (LinearSchedule, base_env_id, load_hyperparams, parse_policy_kwargs,
                                            parse_wrappers)
from distllm_env.agents.sidecar import (ModelMismatchError, describe_difference, read_sidecar, sidecar_path,
                                        space_signature)
from distllm_env.agents.wrappers import MaskInObservation, RoutingFeatures, TrainingSeeds
from distllm_env.cli import main
from distllm_env.errors import ScenarioError

ROUTING_TINY = "distllm/RequestRouting-Tiny-v0"
SMALL = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}
# a congested variant of paper-clustered, so that routers really differ
CLUSTER_OV = ["workload.num_requests=40", "workload.arrival_rate_per_s=4"]


# --------------------------------------------------------------------------------------------------
# hyper-parameters (no torch needed)
# --------------------------------------------------------------------------------------------------

def test_hyperparams_lookup_order_and_parsing(tmp_path):
    f = tmp_path / "ppo.yml"
    f.write_text("default: {policy: MultiInputPolicy, n_steps: 32}\n"
                 "distllm/RequestRouting-v0:\n"
                 "  policy: MlpPolicy\n  n_envs: 3\n  learning_rate: lin_0.002\n  n_timesteps: !!float 1e4\n"
                 "  policy_kwargs: \"dict(net_arch=[32, 16], activation_fn=nn.ReLU)\"\n"
                 "  env_wrapper:\n    - distllm_env.agents.wrappers.RoutingFeatures: {clip: 5}\n"
                 "  env_kwargs: {config: {K: 4}}\n")
    hp = load_hyperparams("ppo", "distllm/RequestRouting-PaperGtsce-v0", f)
    assert hp.key == "distllm/RequestRouting-v0"            # the preset id falls back to the base id
    assert hp.policy == "MlpPolicy" and hp.n_envs == 3 and hp.n_timesteps == 10_000
    lr = hp.algo_kwargs["learning_rate"]
    assert isinstance(lr, LinearSchedule) and lr(1.0) == pytest.approx(0.002) and lr(0.25) == pytest.approx(0.0005)
    import torch.nn as nn

    assert hp.policy_kwargs == {"net_arch": [32, 16], "activation_fn": nn.ReLU}
    assert hp.wrappers == [{"path": "distllm_env.agents.wrappers:RoutingFeatures", "kwargs": {"clip": 5}}]
    assert hp.env_kwargs == {"config": {"K": 4}}
    other = load_hyperparams("ppo", "distllm/BlockPlacement-v0", f, overrides={"n_steps": 8})
    assert other.key == "default" and other.algo_kwargs == {"n_steps": 8}
    assert base_env_id("distllm/BlockPlacement-PaperClustered-v0") == "distllm/BlockPlacement-v0"


def test_hyperparams_refuse_unsafe_or_unsupported_entries(tmp_path):
    with pytest.raises(ScenarioError, match="unsupported expression"):
        parse_policy_kwargs("dict(net_arch=__import__('os').getcwd())")
    with pytest.raises(ScenarioError, match="torch.nn has no"):
        parse_policy_kwargs("dict(activation_fn=nn.NoSuchLayer)")
    with pytest.raises(ScenarioError, match="full import path"):
        parse_wrappers(["RoutingFeatures"])
    f = tmp_path / "a2c.yml"
    f.write_text("default: {normalize: true}\n")
    with pytest.raises(ScenarioError, match="normalize"):
        load_hyperparams("a2c", ROUTING_TINY, f)
    with pytest.raises(ScenarioError, match="--algo"):
        load_hyperparams("sac", ROUTING_TINY)


@pytest.mark.parametrize("algo", ["ppo", "maskable_ppo", "a2c", "dqn"])
def test_shipped_yaml_files_resolve_for_every_decision(algo):
    for env_id in ("distllm/RequestRouting-v0", "distllm/BlockPlacement-v0", "distllm/ClientSplit-v0"):
        hp = load_hyperparams(algo, env_id)
        assert hp.n_timesteps and hp.n_envs >= 1 and hp.policy in ("MlpPolicy", "MultiInputPolicy")
        if env_id == "distllm/RequestRouting-v0":
            assert hp.policy == "MlpPolicy" and hp.wrappers[0]["path"].endswith(":RoutingFeatures")


def test_agent_yaml_is_data_class_paths_come_from_an_allow_list(tmp_path):
    from distllm_env.agents.hyperparams import resolve_policy

    with pytest.raises(ScenarioError, match="allow-list of wrapper modules"):
        parse_wrappers(["os.system"])
    with pytest.raises(ScenarioError, match="allow-list of wrapper modules"):
        parse_wrappers([{"subprocess:Popen": {"args": ["touch", "x"]}}])
    # an opt-in (--allow-import) lets a user's own wrapper through; nothing is imported while parsing
    assert parse_wrappers(["my_pkg.wrappers.Mine"], allow_imports=True) == [{"path": "my_pkg.wrappers:Mine", "kwargs": {}}]
    assert parse_wrappers(["gymnasium.wrappers.FlattenObservation"])[0]["path"] == "gymnasium.wrappers:FlattenObservation"
    with pytest.raises(ScenarioError, match="allow-list of policy packages"):
        resolve_policy("os.getcwd")
    assert resolve_policy("MlpPolicy") == "MlpPolicy"
    f = tmp_path / "ppo.yml"
    f.write_text("default:\n  env_wrapper: [builtins.print]\n")
    with pytest.raises(ScenarioError, match=r"ppo.yml:default.env_wrapper.0"):
        load_hyperparams("ppo", ROUTING_TINY, f)
    with pytest.raises(ScenarioError, match="not a layer or activation"):
        parse_policy_kwargs("dict(activation_fn=nn.init)")


def test_shipped_yaml_uses_the_zoos_dotted_paths():
    """rl_zoo3's get_wrapper_class imports ``".".join(name.split(".")[:-1])`` and takes the last part
    as the class: the shipped files must use that form (no ``module:Class``)."""
    import importlib
    from pathlib import Path

    import yaml

    import distllm_env.agents as agents

    files = sorted(Path(agents.__file__).parent.glob("*.yml"))
    assert len(files) == 4
    seen = 0
    for f in files:
        for entry in yaml.safe_load(f.read_text()).values():
            for w in entry.get("env_wrapper") or []:
                name = next(iter(w)) if isinstance(w, dict) else w
                assert ":" not in name
                cls = getattr(importlib.import_module(".".join(name.split(".")[:-1])), name.split(".")[-1])
                assert issubclass(cls, gym.Wrapper)
                seen += 1
    assert seen >= 4


def test_train_and_evaluate_stay_the_functions_after_their_submodules_are_imported():
    """``from distllm_env.agents import train`` gave the submodule on the second call (issue 9, item 8)."""
    import importlib

    importlib.import_module("distllm_env.agents.train")      # what SB3 helpers, tests or users do
    importlib.import_module("distllm_env.agents.evaluate")
    for _ in range(2):
        from distllm_env.agents import evaluate, train

        assert callable(train) and callable(evaluate) and train.__name__ == "train"
        with pytest.raises(ScenarioError, match="--out"):        # called, not "'module' object is not callable"
            train(ROUTING_TINY, out="model.pt")
        with pytest.raises(ScenarioError, match="exactly one"):
            evaluate()
    from distllm_env.agents.train import TRAIN_SEED_RANGE       # the submodule is still importable

    assert TRAIN_SEED_RANGE == (0, 9_000)


# --------------------------------------------------------------------------------------------------
# wrappers
# --------------------------------------------------------------------------------------------------

def _fake_routing_obs(K=3, S=2):
    obs = {
        "cand_mask": np.array([1, 1, 0], np.float32), "cand_fits": np.array([1, 1, 0], np.float32),
        "cand_static_s": np.array([10.0, 12.0, 0.0], np.float32), "cand_wait_s": np.array([6.0, 0.0, 0.0], np.float32),
        "cand_hops": np.array([2, 1, 0], np.float32),
        "cand_blocks_frac": np.array([0.5, 0.5, 0.0, 1.0, 0.0, 0.0], np.float32),
        "server_mask": np.array([1, 1], np.float32), "server_free_frac": np.array([0.2, 0.6], np.float32),
        "server_next_release_s": np.array([3.0, 0.0], np.float32), "progress": np.array([0.25], np.float32),
        "request_tokens": np.array([20, 512], np.float32),
    }
    space = gym.spaces.Dict({k: gym.spaces.Box(0, 1e4, v.shape, np.float32) for k, v in obs.items()})
    return obs, space


class _Stub(gym.Env):
    def __init__(self, space, K=3):
        self.observation_space, self.action_space = space, gym.spaces.Discrete(K)


def test_routing_features_hand_computed():
    obs, space = _fake_routing_obs()
    w = RoutingFeatures(_Stub(space))
    f = w.observation(obs)
    assert f.shape == w.observation_space.shape == (3 * RoutingFeatures.PER_CAND + RoutingFeatures.GLOBAL,)
    n = 3 * RoutingFeatures.PER_CAND
    c = f[:n].reshape(3, RoutingFeatures.PER_CAND)
    # totals: candidate 0 = 10 + 6 = 16, candidate 1 = 12 + 0 = 12 (the best, T* = 12)
    assert c[1, 0] == 1 and c[1, 1] == pytest.approx(0.0) and c[1, 4] == 1 and c[1, 5] == 0
    assert c[0, 1] == pytest.approx(16 / 12 - 1) and c[0, 2] == pytest.approx(10 / 12) and c[0, 3] == pytest.approx(0.5)
    assert c[0, 4] == 0 and c[0, 5] == pytest.approx(1 / 3) and c[0, 6] == pytest.approx(2 / 16)
    assert c[0, 7] == pytest.approx(0.2) and c[0, 8] == pytest.approx(0.4)      # min / block-weighted mean free
    assert c[0, 9] == pytest.approx(0.0)             # server 1 has no pending release
    assert c[1, 7] == pytest.approx(0.6) and c[1, 8] == pytest.approx(0.6) and c[1, 9] == 0   # on server 1 only
    assert c[1, 10] == 1 and c[1, 11] == 1 and c[0, 10] == 0 and c[0, 11] == 0   # candidate 1 waits least (0 s)
    assert np.all(c[2] == 0)                          # the padded candidate
    g = f[n:]
    assert g == pytest.approx([0.25, 0.4, 0.5, 2 / 3, 0.5])
    assert w.observation_space.contains(f)


def test_wrappers_on_a_real_env_keep_masks_and_spaces():
    env = MaskInObservation(RoutingFeatures(gym.make(ROUTING_TINY)))
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    mask = env.get_wrapper_attr("action_masks")()
    assert np.array_equal(obs["action_mask"] > 0.5, mask) and np.array_equal(mask, info["action_mask"] > 0)
    flat = MaskInObservation(gym.make(ROUTING_TINY))
    o2, _ = flat.reset(seed=3)
    assert o2["observations"].shape == (gym.spaces.flatdim(gym.make(ROUTING_TINY).observation_space),)


def test_training_seeds_stay_below_the_evaluation_range_and_repeat():
    def seeds(first):
        env = TrainingSeeds(gym.make(ROUTING_TINY), 0, 9_000)
        env.reset(seed=first)
        for _ in range(5):
            env.reset()
        return env.episode_seeds

    a, b = seeds(11), seeds(11)
    assert a == b and all(0 <= s < 9_000 for s in a) and len(set(a)) > 1
    assert seeds(12) != a
    env = TrainingSeeds(gym.make(ROUTING_TINY), 0, 9_000)
    _, info = env.reset(seed=11)
    assert info["scenario_seed"] == a[0]


def test_sidecar_signatures_detect_changes():
    a = gym.make(ROUTING_TINY).observation_space
    b = gym.make(ROUTING_TINY, config={"K": 4}).observation_space
    sa, sb = space_signature(a), space_signature(b)
    assert json.loads(json.dumps(sa)) == sa
    assert describe_difference(sa, space_signature(a)) == ""
    diff = describe_difference(sa, sb)
    assert diff.startswith("cand_") and "shape" in diff
    assert sidecar_path("x/m.zip").name == "m.json" and sidecar_path("x/ckpt").name == "ckpt.json"


# --------------------------------------------------------------------------------------------------
# SB3 training (torch needed)
# --------------------------------------------------------------------------------------------------

sb3 = pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")


@pytest.fixture(scope="module")
def routing_model(tmp_path_factory):
    """A MaskablePPO model trained for a few hundred steps on congested paper-clustered (CLI path)."""
    out = tmp_path_factory.mktemp("models") / "routing.zip"
    rc = main(["train", "--env", "distllm/RequestRouting-v0", "--scenario", "paper-clustered",
               *sum([["--set", o] for o in CLUSTER_OV], []), "--algo", "maskable_ppo", "--timesteps", "256",
               "--out", str(out), "--seed", "5", "--hyperparams", "n_steps=64", "batch_size=64", "n_epochs=1",
               "--checkpoint-freq", "128", "--no-progress"])
    assert rc == 0
    return out


def test_train_writes_model_sidecar_and_checkpoints(routing_model):
    side = read_sidecar(routing_model)
    assert side["env_id"] == "distllm/RequestRouting-v0" and side["algo"] == "maskable_ppo"
    assert side["backend"] == "sb3" and side["seed"] == 5 and side["timesteps"] >= 256
    assert side["scenario"] == "paper-clustered" and side["overrides"] == CLUSTER_OV
    assert side["scenario_hash"] == distllm_env.load_scenario("paper-clustered", CLUSTER_OV).hash
    assert side["version"] == distllm_env.__version__
    assert side["wrappers"][0]["path"].endswith(":RoutingFeatures")
    env = RoutingFeatures(gym.make("distllm/RequestRouting-v0"))
    assert side["observation_space"] == space_signature(env.observation_space)
    assert side["env_observation_space"] == space_signature(env.unwrapped.observation_space)
    assert side["train_seed_range"][1] <= 10_000
    ckpts = list((routing_model.parent / "routing_checkpoints").glob("*.zip"))
    assert len(ckpts) >= 1


@pytest.mark.parametrize("algo", ["ppo", "maskable_ppo"])
def test_smoke_training_save_load_predict_round_trip(algo, tmp_path):
    from distllm_env.agents import LearnedModel
    from distllm_env.agents.train import train

    res = train(ROUTING_TINY, None, algo, 192, tmp_path / f"{algo}.zip", seed=3, hyperparams=SMALL, progress_bar=False)
    assert res.timesteps >= 192 and res.model_path.is_file() and res.sidecar_path.is_file()
    loaded = LearnedModel(res.model_path)
    env = loaded.make_env()
    obs, _ = env.reset(seed=10_000)
    for _ in range(10):
        mask = env.get_wrapper_attr("action_masks")()
        a_loaded = loaded.predict(obs, mask)
        kw = {"action_masks": mask} if algo == "maskable_ppo" else {}
        a_mem, _ = res.model.predict(obs, deterministic=True, **kw)
        assert a_loaded == int(a_mem)
        if algo == "maskable_ppo":
            assert mask[a_loaded]
        obs, _, term, _, _ = env.step(a_loaded)
        if term:
            break


def test_training_is_repeatable_for_a_seed(tmp_path):
    from distllm_env.agents.train import train

    a = train(ROUTING_TINY, None, "maskable_ppo", 128, tmp_path / "a.zip", seed=7, hyperparams=SMALL, progress_bar=False)
    b = train(ROUTING_TINY, None, "maskable_ppo", 128, tmp_path / "b.zip", seed=7, hyperparams=SMALL, progress_bar=False)
    c = train(ROUTING_TINY, None, "maskable_ppo", 128, tmp_path / "c.zip", seed=8, hyperparams=SMALL, progress_bar=False)
    pa, pb, pc = (m.model.policy.state_dict() for m in (a, b, c))
    assert all(np.array_equal(pa[k].numpy(), pb[k].numpy()) for k in pa)
    assert not all(np.array_equal(pa[k].numpy(), pc[k].numpy()) for k in pa)


def test_train_rejects_bad_input(tmp_path, capsys):
    assert main(["train", "--env", "distllm/NoSuchEnv-v0", "--timesteps", "10", "--out", str(tmp_path / "m.zip")]) == 2
    assert "unknown environment id" in capsys.readouterr().err
    assert main(["train", "--env", ROUTING_TINY, "--timesteps", "10", "--out", str(tmp_path / "m.pt")]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["train", "--env", ROUTING_TINY, "--timesteps", "10", "--seed", "10000",
                 "--out", str(tmp_path / "m.zip")]) == 2
    assert "training seed" in capsys.readouterr().err


def test_learned_router_in_the_simulator_equals_the_env_episode(routing_model):
    """The LearnedRouter's shadow env keeps the simulation identical to an env episode with the model."""
    from distllm_env.agents import LearnedEnvPolicy, LearnedModel, LearnedRouter
    from distllm_env.envs.policies import run_episode

    model = LearnedModel(routing_model)
    for seed in (10_000, 10_001):
        env = model.make_env()
        run_episode(env, LearnedEnvPolicy(model, env), seed=seed)
        env_records = [r for r in env.unwrapped.sim.finished_records()]
        router = LearnedRouter(model)
        res = distllm_env.simulate("paper-clustered", router, router, seed=seed, overrides=CLUSTER_OV,
                                   allocation_delays={})
        assert router.decisions == len(res.records) == 40
        assert [(r.request_id, r.start_s, r.completion_s, r.route.to_text()) for r in res.records] == \
            [(r.request_id, r.start_s, r.completion_s, r.route.to_text()) for r in env_records]
        assert res.summary["mean_per_token_time_s"] == pytest.approx(env.unwrapped.episode_summary()["mean_per_token_time_s"])


def test_evaluate_cli_table_png_and_json(routing_model, tmp_path, capsys):
    png, js = tmp_path / "eval.png", tmp_path / "eval.json"
    rc = main(["evaluate", "--model", str(routing_model), "--seeds", "2", "--policies", "petals,ws-rr,random",
               "--out", str(png), "--out", str(js)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "cg-bp+petals" in text and "cg-bp+ws-rr" in text and "reduction" in text and "seeds 10000…10001" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["meta"]["seeds"] == [10_000, 10_001] and data["meta"]["allocation_delays"] == {}
    by = {r["policy"]: r["mean_per_token_time_s"] for r in data["results"]}
    learned = data["meta"]["evaluated_policy"]
    for m in data["margins"]:
        assert m["reduction"] == pytest.approx(1 - by[learned] / by[m["baseline"]])
    # the baselines are exactly what simulate() gives on the model's placement with zero delays
    sc = distllm_env.load_scenario("paper-clustered", CLUSTER_OV)
    ref = np.mean([distllm_env.simulate(sc, "cg-bp", "petals", seed=s, allocation_delays={})
                   .summary["mean_per_token_time_s"] for s in (10_000, 10_001)])
    assert by["cg-bp+petals"] == pytest.approx(ref)


def _copy_model(src, dst_dir, name="m"):
    dst = dst_dir / f"{name}.zip"
    shutil.copy(src, dst)
    shutil.copy(sidecar_path(src), sidecar_path(dst))
    return dst


@pytest.mark.parametrize("tamper,fragment", [
    (lambda s: s.update(env_id="distllm/BlockPlacement-v0"), "does not fit distllm/BlockPlacement-v0"),
    (lambda s: s["observation_space"].update(shape=[3]), "observation space"),
    (lambda s: s["env_config"].update(K=4), "observation space"),
    (lambda s: s.update(format="something-else"), "format"),
])
def test_evaluate_refuses_a_mismatched_sidecar(routing_model, tmp_path, capsys, tamper, fragment):
    m = _copy_model(routing_model, tmp_path)
    side = json.loads(sidecar_path(m).read_text())
    tamper(side)
    sidecar_path(m).write_text(json.dumps(side))
    assert main(["evaluate", "--model", str(m), "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and "Traceback" not in err[0]


def test_evaluate_refuses_a_missing_sidecar_and_another_env_id(routing_model, tmp_path, capsys):
    m = _copy_model(routing_model, tmp_path)
    assert main(["evaluate", "--model", str(m), "--env", "distllm/BlockPlacement-v0", "--seeds", "1"]) == 2
    assert "trained on 'distllm/RequestRouting-v0'" in capsys.readouterr().err
    sidecar_path(m).unlink()
    assert main(["evaluate", "--model", str(m), "--seeds", "1"]) == 2
    assert "no sidecar" in capsys.readouterr().err
    with pytest.raises(ModelMismatchError):
        read_sidecar(m)


def test_evaluate_accepts_a_user_policy_by_import_path(capsys):
    rc = main(["evaluate", "--policy", "distllm_env.baselines.simple:ShortestRouter", "--scenario", "paper-clustered",
               *sum([["--set", o] for o in CLUSTER_OV], []), "--seeds", "1", "--policies", "shortest,random",
               "--format", "json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    by = {m["baseline"]: m for m in data["margins"]}
    assert by["cg-bp+shortest"]["reduction"] == pytest.approx(0.0)     # the same router on the same placement
    assert set(by) == {"cg-bp+shortest", "cg-bp+random"}


def test_assert_beats_with_a_learned_model(routing_model):
    from distllm_env.agents import LearnedRouter
    from distllm_env.testing import assert_beats

    seeds = [10_000, 10_001]
    # must pass: any policy matches itself at margin 0
    out = assert_beats(LearnedRouter(routing_model), LearnedRouter(routing_model, name="same-model"),
                       "paper-clustered", seeds=seeds, margin=0.0, overrides=CLUSTER_OV)
    assert out["policy_mean_s"] == pytest.approx(out["baseline_mean_s"])
    # must fail: nothing beats itself by 10 %; the message carries the per-seed table
    with pytest.raises(AssertionError) as info:
        assert_beats(LearnedRouter(routing_model), LearnedRouter(routing_model, name="same-model"),
                     "paper-clustered", seeds=seeds, margin=0.1, overrides=CLUSTER_OV)
    assert "does not beat" in str(info.value) and "10001" in str(info.value)


def test_learned_placement_runs_in_compare(tmp_path):
    from distllm_env.agents import LearnedModel, LearnedPlacement
    from distllm_env.agents.train import train
    from distllm_env.envs.policies import run_episode

    res = train("distllm/BlockPlacement-Tiny-v0", None, "maskable_ppo", 64, tmp_path / "pl.zip", seed=1,
                hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1}, progress_bar=False)
    model = LearnedModel(res.model_path)
    pol = LearnedPlacement(model)
    sim = distllm_env.simulate("tiny", pol, pol, seed=10_000, allocation_delays={})
    env = model.make_env()
    from distllm_env.agents import LearnedEnvPolicy

    out = run_episode(env, LearnedEnvPolicy(model, env), seed=10_000)
    assert sim.placement_result.placement == env.unwrapped.result.placement
    assert sim.summary["mean_per_token_time_s"] == pytest.approx(-out["return"])


def test_subprocess_vector_envs_train(tmp_path):
    """SubprocVecEnv workers (spawn) build the env from the module-prefixed id."""
    from distllm_env.agents.train import train

    res = train(ROUTING_TINY, None, "ppo", 64, tmp_path / "sub.zip", seed=4, n_envs=2, vec_env="subproc",
                hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1}, progress_bar=False)
    assert res.timesteps >= 64 and res.sidecar["n_envs"] == 2 and res.sidecar["vec_env"] == "subproc"


def test_a_dotted_sb3_policy_class_in_the_yaml_is_resolved():
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

    from distllm_env.agents.hyperparams import resolve_policy

    assert resolve_policy("sb3_contrib.common.maskable.policies.MaskableActorCriticPolicy") is MaskableActorCriticPolicy
    with pytest.raises(ScenarioError, match="not an SB3 policy class"):
        resolve_policy("stable_baselines3.PPO")
    import torch

    assert parse_policy_kwargs("dict(activation_fn=th.nn.ReLU, optimizer_class=th.optim.Adam)") == {
        "activation_fn": torch.nn.ReLU, "optimizer_class": torch.optim.Adam}


def test_tensorboard_without_the_package_is_a_clean_error(tmp_path, capsys):
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    assert main(["train", "--env", ROUTING_TINY, "--timesteps", "10", "--tensorboard", str(tmp_path / "tb"),
                 "--out", str(tmp_path / "m.zip")]) == 2
    err = capsys.readouterr().err
    assert "tensorboard" in err and "distllm-env[tensorboard]" in err and "not part of any extra" not in err


def test_hyperparams_and_env_config_values_use_the_data_yaml_reader(tmp_path):
    """``--hyperparams`` / ``--env-config`` values and agent YAML files go through the one data reader
    (distllm_env.yaml_safe): YAML 1.2 floats (``1e3`` is a number), no aliases, no duplicate keys,
    no tags; an empty value is None."""
    from distllm_env.agents.hyperparams import parse_assignments

    got = parse_assignments(["learning_rate=3e-4", "n_steps=1e3", "gamma=.99", "note=", "net=[64, 64]"],
                            "--hyperparams")
    assert got == {"learning_rate": 3e-4, "n_steps": 1000.0, "gamma": 0.99, "note": None, "net": [64, 64]}
    assert isinstance(got["n_steps"], float)
    for bad in ("x=!!python/object:os.system ls", "x={a: 1, a: 2}", "x=[&a 1, *a]"):
        with pytest.raises(ScenarioError) as exc:
            parse_assignments([bad], "--env-config")
        assert "\n" not in str(exc.value)
    f = tmp_path / "hp.yml"
    f.write_text("default:\n  n_steps: 8\n  n_steps: 16\n")
    with pytest.raises(ScenarioError) as exc:
        load_hyperparams("ppo", ROUTING_TINY, f)
    assert "duplicate key" in str(exc.value) and exc.value.path == "default.n_steps"
    f.write_text("default:\n  n_steps: 1e3\n  learning_rate: 1e-3\n")
    hp = load_hyperparams("ppo", ROUTING_TINY, f)
    assert hp.n_timesteps is None and hp.raw["n_steps"] == 1000.0 and hp.algo_kwargs["learning_rate"] == 1e-3

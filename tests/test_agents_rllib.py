"""Ray RLlib back-end: a tiny PPO run with the masking module on local workers, the checkpoint + sidecar,
and the trained module as a router (runs when the 'rllib' extra is installed, as in .ci/run)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.rllib")
pytest.importorskip("torch")

import distllm_env  # noqa: E402
from distllm_env.agents.sidecar import read_sidecar, space_signature  # noqa: E402
from distllm_env.agents.wrappers import MaskInObservation, RoutingFeatures  # noqa: E402

ENV = "distllm/RequestRouting-Tiny-v0"


@pytest.fixture(scope="module")
def ray_local():
    # a truly local Ray: a `ray start` cluster on this machine must not capture the tests (issue 13)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_masking_module_never_picks_a_masked_action(ray_local):
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from distllm_env.agents.rllib import MaskedPPOTorchRLModule

    env = MaskInObservation(RoutingFeatures(gym.make(ENV)))
    module = RLModuleSpec(module_class=MaskedPPOTorchRLModule, observation_space=env.observation_space,
                          action_space=env.action_space, model_config={"fcnet_hiddens": [16]}).build()
    obs, _ = env.reset(seed=0)
    mask = np.array([0, 1, 0, 1, 0, 0, 0, 0], dtype=np.float32)
    batch = {Columns.OBS: {"observations": torch.as_tensor(obs["observations"])[None].repeat(64, 1),
                           "action_mask": torch.as_tensor(mask)[None].repeat(64, 1)}}
    logits = module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
    probs = torch.softmax(logits, dim=-1).detach().numpy()
    assert probs.shape == (64, 8)
    assert np.all(probs[:, mask == 0] < 1e-30) and np.allclose(probs.sum(axis=1), 1.0)
    values = module.compute_values(batch)
    assert tuple(values.shape) == (64,)


def test_tiny_rllib_run_checkpoint_sidecar_and_router(ray_local, tmp_path):
    from distllm_env.agents import LearnedModel, LearnedRouter
    from distllm_env.agents.rllib import train_rllib

    res = train_rllib(ENV, None, "maskable_ppo", 128, tmp_path / "rl.zip", seed=2,
                      hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1}, num_env_runners=0, n_envs=1,
                      max_iterations=4)
    assert res.model_path == tmp_path / "rl" and res.model_path.is_dir()
    assert 1 <= res.sidecar["iterations"] <= 4 and res.timesteps >= 32
    side = read_sidecar(res.model_path)
    assert side["backend"] == "rllib" and side["env_id"] == ENV
    env = MaskInObservation(RoutingFeatures(gym.make(ENV)))
    assert side["observation_space"] == space_signature(env.observation_space)
    assert side["rllib_training"]["train_batch_size_per_learner"] == 32
    model = LearnedModel(res.model_path)
    menv = model.make_env()
    obs, _ = menv.reset(seed=10_000)
    a = model.predict(obs)
    assert menv.get_wrapper_attr("action_masks")()[a]
    router = LearnedRouter(model)
    sim = distllm_env.simulate("tiny", router, router, seed=10_000, allocation_delays={})
    assert router.decisions == len(sim.records) and sim.summary["num_rejected"] == 0


def test_cli_train_backend_rllib_refuses_dqn(tmp_path, capsys):
    from distllm_env.cli import main

    assert main(["train", "--backend", "rllib", "--env", ENV, "--algo", "dqn", "--timesteps", "10",
                 "--out", str(tmp_path / "x.zip")]) == 2
    assert "rllib back-end trains" in capsys.readouterr().err


def test_relative_scenario_reaches_env_runners_and_free_cpus_are_checked(ray_local, tmp_path, monkeypatch):
    """A relative `--scenario my.yaml` trains with an env runner actor (the runner gets the resolved
    scenario, not the path its own working directory would resolve); more runners than free CPUs are
    refused before anything launches (issue 13 item 6)."""
    import yaml

    from distllm_env.agents.rllib import train_rllib
    from distllm_env.errors import ScenarioError
    from distllm_env.scenario import preset_path

    raw = yaml.safe_load(preset_path("tiny").read_text())
    raw["workload"]["num_requests"] = 7
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)      # Ray's workers started in the directory of ray.init, not here
    kw = {"hyperparams": {"n_steps": 16, "batch_size": 16, "n_epochs": 1}, "n_envs": 1}
    with pytest.raises(ScenarioError, match=r"--num-env-runners: 3 env runners need 3 CPUs .* free of 2"):
        train_rllib(ENV, "my.yaml", "maskable_ppo", 16, tmp_path / "no.zip", num_env_runners=3, **kw)
    assert not (tmp_path / "no").exists()
    res = train_rllib(ENV, "my.yaml", "maskable_ppo", 16, tmp_path / "rel.zip", num_env_runners=1,
                      max_iterations=1, **kw)
    assert res.sidecar["num_env_runners"] == 1 and res.timesteps >= 16
    assert res.sidecar["scenario_hash"] == distllm_env.load_scenario(str(tmp_path / "my.yaml")).hash


def test_num_cpus_is_refused_with_an_existing_cluster(monkeypatch):
    from distllm_env.agents.rllib import init_ray
    from distllm_env.errors import ScenarioError

    with pytest.raises(ScenarioError, match="--num-cpus: only for a local Ray"):
        init_ray("auto", num_cpus=2)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    with pytest.raises(ScenarioError, match="10.0.0.1:6379"):
        init_ray(None, num_cpus=2)

"""Ray RLlib back-end (``pip install 'distllm-env[rllib]'``; docs/agents.md).

* :func:`register_rllib_env` registers a ``distllm/*`` id with Ray's registry (``ray.tune.registry.
  register_env``): the Gymnasium registry is not reliably visible inside Ray workers, so the creator
  imports the package itself.  The env is wrapped in the YAML's feature wrappers,
  :class:`~.wrappers.TrainingSeeds` (scenario seeds in [0, 9 000), offset per env runner and vector
  index) and :class:`~.wrappers.MaskInObservation` (the action mask carried in the observation).
* :class:`MaskedPPOTorchRLModule` — RLlib's default PPO torch module built on the ``observations`` part
  of that ``Dict``; it adds max(log(mask), FLOAT_MIN) to the action logits, so masked actions get
  probability 0 in exploration, inference and training alike.
* :func:`train_rllib` — ``distllm-env train --backend rllib``: PPO with hyper-parameters from the same
  ``agents/<algo>.yml`` entry as SB3 (:data:`SB3_TO_RLLIB`), ``num_env_runners`` EnvRunner actors on a
  truly local Ray or an existing cluster (``address``; :func:`init_ray`, free CPUs checked first by
  :func:`check_free_cpus`), checkpoint directory + sidecar.

Ray pins gymnasium exactly (1.2.2 for ray 2.60), which is why the core keeps a range.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._version import __version__
from ..errors import ScenarioError
from .envs import EnvFactory, check_env_id
from .hyperparams import LinearSchedule, load_hyperparams
from .sidecar import sidecar_path, space_signature, write_sidecar

try:  # the module class must exist at import time for RLlib checkpoints to unpickle it
    import torch
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
    from ray.rllib.core.columns import Columns
    from ray.rllib.utils.torch_utils import FLOAT_MIN
    HAVE_RLLIB = True
except ImportError:  # pragma: no cover - the rllib extra is optional
    HAVE_RLLIB = False
    DefaultPPOTorchRLModule = object  # type: ignore[misc,assignment]

#: SB3 / RL-Zoo key → PPOConfig.training() argument (the keys both back-ends share)
SB3_TO_RLLIB = {
    "gamma": "gamma", "gae_lambda": "lambda_", "clip_range": "clip_param", "ent_coef": "entropy_coeff",
    "vf_coef": "vf_loss_coeff", "n_epochs": "num_epochs", "batch_size": "minibatch_size", "max_grad_norm": "grad_clip",
}
#: algorithms that map to RLlib PPO (with the masking module)
RLLIB_ALGOS = ("ppo", "maskable_ppo")
#: scenario seeds of RLlib training episodes
TRAIN_SEED_RANGE = (0, 9_000)


def _require_rllib() -> None:
    if not HAVE_RLLIB:
        raise ScenarioError("--backend", "rllib needs Ray RLlib and torch: pip install 'distllm-env[rllib]' torch")


def rllib_env_name(env_id: str) -> str:
    return f"distllm-rllib/{env_id}"


def make_rllib_env(env_config: Mapping[str, Any]):
    """Env creator for Ray: ``env_config`` holds ``env_id``, ``scenario``, ``overrides``, ``config``,
    ``wrappers`` and ``seed`` (plus RLlib's ``worker_index`` / ``vector_index`` attributes)."""
    import distllm_env  # noqa: F401  (registers the ids inside the worker)

    from .wrappers import MaskInObservation, TrainingSeeds

    factory = EnvFactory(env_config["env_id"], env_config.get("scenario"), tuple(env_config.get("overrides") or ()),
                         dict(env_config.get("config") or {}), list(env_config.get("wrappers") or ()), seed_range=None)
    env = TrainingSeeds(factory(), *env_config.get("seed_range", TRAIN_SEED_RANGE))
    # a distinct, reproducible seed stream per env runner and vector slot
    worker = int(getattr(env_config, "worker_index", 0))
    vector = int(getattr(env_config, "vector_index", 0))
    env.reset(seed=int(env_config.get("seed", 0)) * 1_000_003 + worker * 1_009 + vector)
    return MaskInObservation(env)


def register_rllib_env(env_id: str) -> str:
    """Register ``env_id`` with Ray's registry; returns the name to pass to ``config.environment``."""
    _require_rllib()
    from ray.tune.registry import register_env

    name = rllib_env_name(check_env_id(env_id))
    register_env(name, make_rllib_env)
    return name


class MaskedPPOTorchRLModule(DefaultPPOTorchRLModule):
    """PPO torch RL module for ``Dict({"observations", "action_mask"})`` observations
    (:class:`~.wrappers.MaskInObservation`): the encoder, policy and value heads are RLlib's defaults,
    built on ``observations``; logits of masked actions get max(log 0, FLOAT_MIN) added."""

    def __init__(self, *args, observation_space=None, **kwargs):
        from gymnasium import spaces

        self.full_observation_space = observation_space
        if isinstance(observation_space, spaces.Dict) and "action_mask" in observation_space.spaces:
            observation_space = observation_space["observations"]
        super().__init__(*args, observation_space=observation_space, **kwargs)

    @staticmethod
    def _split(batch: dict) -> tuple[dict, Any]:
        obs = batch[Columns.OBS]
        if isinstance(obs, Mapping) and "action_mask" in obs:
            batch = dict(batch)
            batch[Columns.OBS] = obs["observations"]
            return batch, obs["action_mask"]
        return batch, None

    @staticmethod
    def _apply_mask(out: dict, mask) -> dict:
        if mask is not None:
            logits = out[Columns.ACTION_DIST_INPUTS]
            out[Columns.ACTION_DIST_INPUTS] = logits + torch.clamp(torch.log(mask), min=FLOAT_MIN)
        return out

    def _forward(self, batch, **kwargs):
        batch, mask = self._split(batch)
        return self._apply_mask(super()._forward(batch, **kwargs), mask)

    def _forward_train(self, batch, **kwargs):
        batch, mask = self._split(batch)
        return self._apply_mask(super()._forward_train(batch, **kwargs), mask)

    def compute_values(self, batch, embeddings=None):
        batch, _ = self._split(batch)
        return super().compute_values(batch, embeddings)


def rllib_training_kwargs(hp, n_envs: int, num_env_runners: int) -> tuple[dict, dict]:
    """``(PPOConfig.training kwargs, model_config)`` from an SB3 hyper-parameter entry.

    ``n_steps`` × envs per runner × max(runners, 1) becomes ``train_batch_size_per_learner``; a
    ``lin_<v>`` learning rate becomes RLlib's piecewise-linear schedule from v to 0; ``net_arch`` /
    ``activation_fn`` become ``fcnet_hiddens`` / ``fcnet_activation``."""
    a = dict(hp.algo_kwargs)
    train: dict[str, Any] = {}
    for k, rk in SB3_TO_RLLIB.items():
        if k in a and not callable(a[k]):
            train[rk] = a[k]
    n_steps = int(a.get("n_steps", 256))
    train["train_batch_size_per_learner"] = n_steps * n_envs * max(num_env_runners, 1)
    if "minibatch_size" in train:
        train["minibatch_size"] = min(int(train["minibatch_size"]), train["train_batch_size_per_learner"])
    lr = a.get("learning_rate", 3e-4)
    if isinstance(lr, LinearSchedule):
        total = int(hp.n_timesteps or 1e6)
        train["lr"] = [[0, lr.initial], [total, lr.initial * 1e-3]]
    elif not callable(lr):
        train["lr"] = float(lr)
    model_config: dict[str, Any] = {"vf_share_layers": False}
    pk = dict(hp.policy_kwargs)
    arch = pk.get("net_arch")
    if isinstance(arch, (list, tuple)) and all(isinstance(x, int) for x in arch):
        model_config["fcnet_hiddens"] = list(arch)
    elif isinstance(arch, Mapping) and "pi" in arch:
        model_config["fcnet_hiddens"] = list(arch["pi"])
    act = pk.get("activation_fn")
    if act is not None:
        model_config["fcnet_activation"] = getattr(act, "__name__", str(act)).lower()
    return train, model_config


def train_rllib(env_id: str, scenario: Any = None, algo: str = "maskable_ppo", timesteps: int | None = None,
                out: str | Path = "model", *, seed: int = 0, overrides: Sequence[str] = (),
                env_config: Mapping[str, Any] | None = None, hyperparams_path: str | Path | None = None,
                hyperparams: Mapping[str, Any] | None = None, num_env_runners: int = 0, n_envs: int | None = None,
                address: str | None = None, num_cpus: int | None = None, verbose: int = 0,
                max_iterations: int | None = None, allow_imports: bool = False):
    """Train RLlib PPO with the masking module; returns a :class:`~.train.TrainResult` whose
    ``model_path`` is the checkpoint directory (``out`` without ``.zip``) and whose sidecar sits at
    ``<dir>.json``.  ``address`` connects to an existing Ray cluster (``auto``, ``HOST:PORT`` or the
    Ray Client form ``ray://HOST:10001``, docs/agents.md); without it the ``RAY_ADDRESS`` environment
    variable is used when set, else a truly local Ray with ``num_cpus`` CPUs is started
    (``ray.init(address="local")``: a ``ray start`` cluster on the same machine does not capture it).
    The env runners receive the resolved scenario object, never a path to re-resolve on a worker.

    Raises:
        ScenarioError: an algorithm other than RLlib PPO, ``num_env_runners`` < 0, ``timesteps`` < 1,
            an ``out`` that exists and is not a checkpoint directory, ``num_cpus`` with an existing
            cluster (path ``--num-cpus``), or more env runners than the cluster's free CPUs (path
            ``--num-env-runners``; checked before anything is launched, where Ray would wait forever)."""
    _require_rllib()
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from .train import TrainResult, _library_versions, _scenario_fields
    from .wrappers import MaskInObservation

    if algo not in RLLIB_ALGOS:
        raise ScenarioError("--algo", f"the rllib back-end trains {list(RLLIB_ALGOS)} (RLlib PPO), got {algo!r}")
    if num_env_runners < 0:
        raise ScenarioError("--num-env-runners", f"expected ≥ 0, got {num_env_runners}")
    env_id = check_env_id(env_id)
    hp = load_hyperparams(algo, env_id, hyperparams_path, hyperparams, allow_imports=allow_imports)
    total = int(timesteps if timesteps is not None else (hp.n_timesteps or 0))
    if total < 1:
        raise ScenarioError("--timesteps", f"expected ≥ 1, got {total}")
    out = Path(out)
    ckpt = out.with_suffix("") if out.suffix == ".zip" else out
    if ckpt.exists() and not ckpt.is_dir():
        raise ScenarioError("--out", f"{str(ckpt)!r} exists and is not a checkpoint directory")
    from ..outputs import check_out_path

    check_out_path(sidecar_path(ckpt))      # before training: the sidecar PATH.json (the directory may exist)
    n = int(n_envs or hp.n_envs)
    config = dict(hp.env_kwargs.get("config") or {}) | dict(env_config or {})
    ov = list(hp.env_kwargs.get("overrides") or ()) + list(overrides or ())

    factory = EnvFactory(env_id, scenario, tuple(ov), config, hp.wrappers, seed_range=None)
    probe = factory()
    base = probe.unwrapped
    model_obs_space = probe.observation_space      # what the wrappers give (before the mask is added)
    env_sig = space_signature(base.observation_space)
    masked_space = MaskInObservation(probe).observation_space
    recorded_config = base.recordable_config()
    sc = base.scenario
    probe.close()

    started = init_ray(address, num_cpus, log_to_driver=verbose > 0)
    try:
        check_free_cpus(num_env_runners)
        name = register_rllib_env(env_id)
        train_kw, model_config = rllib_training_kwargs(hp, n, num_env_runners)
        # the resolved Scenario object (overrides applied), not its path: a relative `--scenario my.yaml`
        # would be resolved from each env runner's working directory (the cluster's start directory)
        env_cfg = {"env_id": env_id, "scenario": sc, "overrides": [], "config": config,
                   "wrappers": hp.wrappers, "seed": seed, "seed_range": list(TRAIN_SEED_RANGE)}
        cfg = (PPOConfig()
               .environment(name, env_config=env_cfg)
               .framework("torch")
               .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=n,
                            rollout_fragment_length="auto")
               .training(**train_kw)
               .rl_module(rl_module_spec=RLModuleSpec(module_class=MaskedPPOTorchRLModule, model_config=model_config))
               .debugging(seed=seed, log_level="ERROR" if verbose == 0 else "INFO"))
        algo_obj = cfg.build_algo()
        t0 = time.perf_counter()
        steps, iters = 0, 0
        while steps < total and (max_iterations is None or iters < max_iterations):
            result = algo_obj.train()
            iters += 1
            steps = int(result.get("env_runners", {}).get("num_env_steps_sampled_lifetime",
                                                          result.get("num_env_steps_sampled_lifetime", steps)))
            if verbose:
                ret = result.get("env_runners", {}).get("episode_return_mean")
                print(f"iteration {iters}: {steps}/{total} steps, episode return mean {ret}")
        elapsed = time.perf_counter() - t0
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        algo_obj.save_to_path(str(ckpt.resolve()))
        algo_obj.stop()
    finally:
        if started:
            ray.shutdown()
    sidecar = {
        "backend": "rllib", "algo": algo, "env_id": env_id, "env_config": recorded_config, "wrappers": hp.wrappers,
        **_scenario_fields(sc), "observation_space": space_signature(masked_space),
        "model_observation_space": space_signature(model_obs_space), "env_observation_space": env_sig,
        "action_space": space_signature(base.action_space), "version": __version__, "libraries": _library_versions(),
        "seed": seed, "timesteps": steps, "requested_timesteps": total, "iterations": iters,
        "num_env_runners": num_env_runners, "n_envs": n, "train_seed_range": list(TRAIN_SEED_RANGE),
        "rllib_training": train_kw, "rllib_model_config": model_config,
        "hyperparams": {"file": hp.source, "key": hp.key, "entry": hp.raw}, "training_time_s": round(elapsed, 3),
    }
    sc_path = write_sidecar(ckpt, sidecar)
    return TrainResult(ckpt, sc_path, steps, elapsed, sidecar)


def init_ray(address: str | None, num_cpus: int | None = None, log_to_driver: bool = False) -> bool:
    """Connect to Ray unless it is already initialised; returns whether this call started it (the caller
    then shuts it down).  ``address`` (else ``RAY_ADDRESS``): an existing cluster; otherwise a truly
    local Ray (``address="local"``) with ``num_cpus`` CPUs, even while a ``ray start`` cluster runs on
    this machine.

    Raises:
        ScenarioError: ``num_cpus`` together with an existing cluster (path ``--num-cpus``)."""
    import os

    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "local" and num_cpus is not None:
        raise ScenarioError("--num-cpus", f"only for a local Ray; the cluster at {address!r} has its own CPUs "
                                          "(drop --num-cpus, or --ray-address / RAY_ADDRESS for a local Ray)")
    if ray.is_initialized():
        return False
    if address and address != "local":
        ray.init(address=address, include_dashboard=False, log_to_driver=log_to_driver)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver)
    return True


def check_free_cpus(num_env_runners: int, cpus_per_runner: float = 1.0) -> None:
    """Refuse to launch more env runners than the connected Ray cluster has free CPUs (Ray would
    queue the actors and training would hang without a word).  Each runner takes ``cpus_per_runner``
    CPUs (RLlib's default ``num_cpus_per_env_runner`` = 1); the learner runs in the driver.

    Raises:
        ScenarioError: (path ``--num-env-runners``) not enough free CPUs."""
    import ray

    need = num_env_runners * cpus_per_runner
    if need <= 0:
        return
    free = float(ray.available_resources().get("CPU", 0.0))
    total = float(ray.cluster_resources().get("CPU", 0.0))
    if need > free:
        raise ScenarioError("--num-env-runners", f"{num_env_runners} env runners need {need:g} CPUs but the Ray "
                                                 f"cluster has {free:g} free of {total:g}; lower --num-env-runners, "
                                                 "raise --num-cpus (local Ray) or add nodes")


# -- loading for evaluation ------------------------------------------------------------------------

def load_rl_module(path: str | Path):
    """The trained RL module of an RLlib checkpoint directory written by :func:`train_rllib`.

    Raises:
        ScenarioError: (path ``--model``) not an RLlib checkpoint directory."""
    _require_rllib()
    from ray.rllib.core.rl_module.rl_module import RLModule

    p = Path(path)
    sub = p / "learner_group" / "learner" / "rl_module" / "default_policy"
    if not sub.is_dir():
        raise ScenarioError("--model", f"{str(p)!r} is not an RLlib checkpoint directory (missing {sub.relative_to(p)})")
    return RLModule.from_checkpoint(str(sub.resolve()))


def rl_module_action(module, obs: Mapping[str, np.ndarray], deterministic: bool = True) -> int:
    """One action of ``module`` for one :class:`~.wrappers.MaskInObservation` observation (greedy on
    the masked logits when ``deterministic``, else sampled)."""
    batch = {Columns.OBS: {k: torch.as_tensor(np.asarray(v, dtype=np.float32))[None] for k, v in obs.items()}}
    with torch.no_grad():
        out = module.forward_inference(batch)
    logits = out[Columns.ACTION_DIST_INPUTS][0]
    if deterministic:
        return int(torch.argmax(logits).item())
    return int(torch.distributions.Categorical(logits=logits).sample().item())


__all__ = ["HAVE_RLLIB", "MaskedPPOTorchRLModule", "RLLIB_ALGOS", "SB3_TO_RLLIB", "check_free_cpus", "init_ray",
           "load_rl_module", "make_rllib_env", "register_rllib_env", "rl_module_action", "rllib_env_name", "rllib_training_kwargs", "train_rllib"]

"""Training with stable-baselines3 / sb3-contrib (``distllm-env train``; docs/agents.md).

:func:`train` builds ``n_envs`` copies of the env (``DummyVecEnv`` or ``SubprocVecEnv``), each wrapped in
the YAML's ``env_wrapper`` list, :class:`~.wrappers.TrainingSeeds` (scenario seeds in [0, 10 000), so
the evaluation seeds ≥ 10 000 stay held out) and SB3's ``Monitor``; creates the algorithm with the
hyper-parameters of ``agents/<algo>.yml`` (RL-Zoo format, :mod:`.hyperparams`); seeds everything
through SB3's ``set_random_seed`` (docs/contracts.md §1) and trains with a progress bar, optional
TensorBoard logs, periodic checkpoints and optional mask-aware evaluation on seeds [9 000, 10 000).
It saves ``PATH.zip`` and the sidecar ``PATH.json`` (:mod:`.sidecar`).
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._version import __version__
from ..errors import ScenarioError
from ..yaml_safe import load_yaml_text
from .envs import EnvFactory, check_env_id, make_vec_env
from .hyperparams import MASKED_ALGOS, Hyperparams, algo_class, load_hyperparams
from .sidecar import space_signature, write_sidecar
from .wrappers import EVAL_SEED_BASE

#: scenario seeds used for training episodes / for the periodic evaluation during training
TRAIN_SEED_RANGE = (0, 9_000)
VALIDATION_SEED_RANGE = (9_000, EVAL_SEED_BASE)


@dataclass
class TrainResult:
    model_path: Path
    sidecar_path: Path
    timesteps: int
    training_time_s: float
    sidecar: dict
    model: Any = None


def _check_out(out: str | Path) -> Path:
    p = Path(out)
    if p.suffix != ".zip":
        raise ScenarioError("--out", f"expected a path ending in .zip, got {str(out)!r}")
    from ..outputs import check_out_path
    from .sidecar import sidecar_path

    check_out_path(p, extra=[sidecar_path(p)])   # before training, not after it
    return p


def _progress_callback(total: int):
    """SB3's rich/tqdm progress bar when both are installed, else a plain-text one (every 10 %)."""
    try:
        import rich  # noqa: F401
        import tqdm  # noqa: F401
        from stable_baselines3.common.callbacks import ProgressBarCallback

        return ProgressBarCallback()
    except ImportError:
        from stable_baselines3.common.callbacks import BaseCallback

        class _TextProgress(BaseCallback):
            def __init__(self):
                super().__init__()
                self._next = 0.1
                self._t0 = time.perf_counter()

            def _on_step(self) -> bool:
                frac = self.num_timesteps / max(total, 1)
                if frac >= self._next:
                    el = time.perf_counter() - self._t0
                    print(f"  {frac:4.0%}  {self.num_timesteps}/{total} steps  {el:7.1f} s", file=sys.stderr, flush=True)
                    while self._next <= frac:
                        self._next += 0.1
                return True

        return _TextProgress()


def _scenario_fields(sc) -> dict:
    """How to rebuild the training scenario: its preset name or path plus overrides, or (for a scenario
    given as a mapping or object) its raw YAML mapping, which already includes the overrides."""
    out = {"scenario_name": sc.name, "scenario_hash": sc.hash}
    if sc.source != "<dict>":
        return out | {"scenario": sc.source, "overrides": list(sc.overrides), "scenario_raw": None}
    return out | {"scenario": None, "overrides": [], "scenario_raw": load_yaml_text(sc.to_yaml(), "scenario")}


def _library_versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("gymnasium", "numpy", "torch", "stable_baselines3", "sb3_contrib"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    return out


def train(env_id: str, scenario: Any = None, algo: str = "maskable_ppo", timesteps: int | None = None,
          out: str | Path = "model.zip", *, seed: int = 0, overrides: Sequence[str] = (),
          env_config: Mapping[str, Any] | None = None, hyperparams_path: str | Path | None = None,
          hyperparams: Mapping[str, Any] | None = None, n_envs: int | None = None, vec_env: str = "dummy",
          progress_bar: bool = True, tensorboard_log: str | Path | None = None, checkpoint_freq: int = 0,
          eval_freq: int = 0, eval_episodes: int = 5, num_threads: int | None = 1, verbose: int = 0,
          time_limit_s: float | None = None, allow_imports: bool = False) -> TrainResult:
    """Train ``algo`` on ``env_id`` (with ``scenario`` + ``overrides``; None = the id's own scenario) for
    ``timesteps`` steps (None = the YAML's ``n_timesteps``) and save ``out`` (.zip) and its sidecar.

    ``env_config`` is merged over the YAML's ``env_kwargs.config``; ``hyperparams`` replaces single
    YAML keys.  ``checkpoint_freq`` / ``eval_freq`` count total env steps (0 = off).  ``time_limit_s``
    stops training early (the sidecar records the steps actually done).  ``num_threads`` sets
    ``torch.set_num_threads`` (None leaves torch's default).  ``allow_imports``: the hyper-parameter
    YAML may name classes outside the allow-lists of :mod:`.hyperparams` (it is data otherwise).

    Raises:
        ScenarioError: a seed outside [0, EVAL_SEED_BASE), fewer than 1 timestep or env, TensorBoard
            logs without the ``tensorboard`` package, or a bad env id, scenario or hyper-parameter."""
    out = _check_out(out)
    env_id = check_env_id(env_id)
    if seed < 0 or seed >= EVAL_SEED_BASE:
        raise ScenarioError("--seed", f"expected a training seed in [0, {EVAL_SEED_BASE}), got {seed}")
    hp: Hyperparams = load_hyperparams(algo, env_id, hyperparams_path, hyperparams, allow_imports=allow_imports)
    total = int(timesteps if timesteps is not None else (hp.n_timesteps or 0))
    if total < 1:
        raise ScenarioError("--timesteps", f"expected a number of steps ≥ 1, got {total}")
    n = int(n_envs or hp.n_envs)
    if n < 1:
        raise ScenarioError("--n-envs", f"expected ≥ 1, got {n}")

    if tensorboard_log:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise ScenarioError("--tensorboard", "TensorBoard logs need the 'tensorboard' package: install the "
                                                 "'tensorboard' extra (pip install 'distllm-env[tensorboard]', or "
                                                 "pip install -e '.[tensorboard]' in a checkout)") from None
    import torch
    from stable_baselines3.common.utils import set_random_seed

    if num_threads:
        torch.set_num_threads(int(num_threads))
    set_random_seed(seed)
    cls = algo_class(algo)

    config = dict(hp.env_kwargs.get("config") or {}) | dict(env_config or {})
    ov = list(hp.env_kwargs.get("overrides") or ()) + list(overrides or ())
    factory = EnvFactory(env_id, scenario, tuple(ov), config, hp.wrappers, TRAIN_SEED_RANGE, monitor=True,
                         monitor_kwargs=hp.monitor_kwargs)
    venv = make_vec_env(factory, n, vec_env, seed=seed)
    probe = factory.raw()          # for the sidecar: the raw env's space, config and scenario
    base = probe.unwrapped
    env_sig = space_signature(probe.observation_space)
    recorded_config = base.recordable_config()
    sc = base.scenario
    probe.close()

    kwargs = hp.constructor_kwargs()
    model = cls(hp.policy_class or hp.policy, venv, seed=seed, verbose=verbose, device="cpu",
                tensorboard_log=str(tensorboard_log) if tensorboard_log else None, **kwargs)

    from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback

    callbacks: list = []
    if progress_bar:
        callbacks.append(_progress_callback(total))
    if checkpoint_freq and checkpoint_freq > 0:
        callbacks.append(CheckpointCallback(save_freq=max(checkpoint_freq // n, 1),
                                            save_path=str(out.with_suffix("")) + "_checkpoints",
                                            name_prefix=out.stem))
    if eval_freq and eval_freq > 0:
        eval_factory = EnvFactory(env_id, scenario, tuple(ov), config, hp.wrappers, VALIDATION_SEED_RANGE,
                                  monitor=True)
        eval_env = make_vec_env(eval_factory, 1, "dummy", seed=seed + 1)
        log_dir = str(out.with_suffix("")) + "_eval"
        if algo in MASKED_ALGOS:
            from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback as EvalCb
        else:
            from stable_baselines3.common.callbacks import EvalCallback as EvalCb
        callbacks.append(EvalCb(eval_env, n_eval_episodes=eval_episodes, eval_freq=max(eval_freq // n, 1),
                                best_model_save_path=log_dir, log_path=log_dir, deterministic=True, verbose=verbose))
    if time_limit_s:
        deadline = time.perf_counter() + float(time_limit_s)

        class _Deadline(BaseCallback):
            def _on_step(self) -> bool:
                return time.perf_counter() < deadline

        callbacks.append(_Deadline())

    t0 = time.perf_counter()
    model.learn(total_timesteps=total, callback=CallbackList(callbacks) if callbacks else None,
                tb_log_name=f"{algo}_{out.stem}")
    elapsed = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    venv.close()

    sidecar = {
        "backend": "sb3", "algo": algo, "env_id": env_id, "env_config": recorded_config,
        "wrappers": hp.wrappers, **_scenario_fields(sc),
        "observation_space": space_signature(model.observation_space), "env_observation_space": env_sig,
        "action_space": space_signature(model.action_space), "version": __version__,
        "libraries": _library_versions(), "seed": seed, "timesteps": int(model.num_timesteps),
        "requested_timesteps": total, "n_envs": n, "vec_env": vec_env, "train_seed_range": list(TRAIN_SEED_RANGE),
        "hyperparams": {"file": hp.source, "key": hp.key, "entry": hp.raw}, "training_time_s": round(elapsed, 3),
        "num_threads": num_threads,
    }
    sc_path = write_sidecar(out, sidecar)
    return TrainResult(out, sc_path, int(model.num_timesteps), elapsed, sidecar, model)


__all__ = ["TRAIN_SEED_RANGE", "TrainResult", "VALIDATION_SEED_RANGE", "train"]

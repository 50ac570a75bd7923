"""Training with stable-baselines3 / sb3-contrib (``distllm-env train``; docs/agents.md).

:func:`train` builds ``n_envs`` copies of the env (``DummyVecEnv`` or ``SubprocVecEnv``), each wrapped in
the YAML's ``env_wrapper`` list, :class:`~.wrappers.TrainingSeeds` (scenario seeds in [0, 9 000), so
the validation seeds [9 000, 10 000) and the evaluation seeds ≥ 10 000 stay held out) and SB3's ``Monitor``; creates the algorithm with the
hyper-parameters of ``agents/<algo>.yml`` (RL-Zoo format, :mod:`.hyperparams`); seeds everything
through SB3's ``set_random_seed`` (docs/contracts.md §1) and trains with a progress bar, optional
TensorBoard logs, periodic checkpoints and optional mask-aware evaluation on the fixed validation
seeds 9 000 … 9 000 + n − 1 (:func:`validation_seeds`).  It saves ``PATH.zip`` and the sidecar
``PATH.json`` (:mod:`.sidecar`); checkpoints and the best validation model get sidecars too.
:func:`train_recipe` trains exactly one zoo recipe (:mod:`.zoo`).
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .._version import __version__
from ..errors import ScenarioError
from .envs import EnvFactory, check_env_id, make_vec_env
from .hyperparams import MASKED_ALGOS, Hyperparams, algo_class, load_hyperparams
from .sidecar import scenario_fields, space_signature, write_sidecar
from .wrappers import EVAL_SEED_BASE

if TYPE_CHECKING:
    from .zoo import Recipe

#: scenario seeds used for training episodes / for the periodic evaluation during training
TRAIN_SEED_RANGE = (0, 9_000)
VALIDATION_SEED_RANGE = (9_000, EVAL_SEED_BASE)


def set_torch_threads(n: int | None = 1) -> None:
    """``torch.set_num_threads(n)`` when torch is installed (None: leave torch's default).  One thread
    is the default of ``train`` and ``evaluate``: the policies are small MLPs, and torch's default (one
    thread per core) made a plain SB3 PPO script several times slower (docs/agents.md "Torch threads")."""
    if not n:
        return
    try:
        import torch
    except ImportError:  # pragma: no cover - the rl extra is missing; the caller fails later with a clear error
        return
    torch.set_num_threads(int(n))


def validation_seeds(n: int) -> list[int]:
    """The fixed scenario seeds of ``--eval-freq`` evaluations: 9 000 … 9 000 + n − 1, inside
    :data:`VALIDATION_SEED_RANGE` (disjoint from the training seeds [0, 9 000) and the held-out seeds
    ≥ 10 000); every evaluation of a run plays exactly these episodes.

    Raises:
        ScenarioError: (path ``--eval-episodes``) n < 1 or more than the range holds."""
    lo, hi = VALIDATION_SEED_RANGE
    if not 1 <= int(n) <= hi - lo:
        raise ScenarioError("--eval-episodes", f"expected 1 … {hi - lo} validation episodes, got {n}")
    return list(range(lo, lo + int(n)))


def _checkpoint_callback(sidecar_at, **kwargs):
    """SB3's ``CheckpointCallback`` that also writes each checkpoint's sidecar (``checkpoint: true``)."""
    from stable_baselines3.common.callbacks import CheckpointCallback

    class _SidecarCheckpoint(CheckpointCallback):
        def _on_step(self) -> bool:
            ok = super()._on_step()
            if self.n_calls % self.save_freq == 0:
                write_sidecar(self._checkpoint_path(extension="zip"), sidecar_at(self.num_timesteps, checkpoint=True))
            return ok

    return _SidecarCheckpoint(**kwargs)


def _validation_callback(masked: bool, eval_env, sidecar_at, best_path: Path, seeds: Sequence[int], **kwargs):
    """SB3's (or sb3-contrib's mask-aware) ``EvalCallback`` on the fixed ``seeds`` (the env is wrapped
    in :class:`~.envs.FixedSeeds`, rewound before each evaluation); each new best model gets its
    sidecar (``best_of_validation``).  ``evaluated_seeds`` lists the seeds of every evaluation."""
    from stable_baselines3.common.callbacks import BaseCallback

    if masked:
        from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback as EvalCb
    else:
        from stable_baselines3.common.callbacks import EvalCallback as EvalCb

    class _BestSidecar(BaseCallback):
        def _on_step(self) -> bool:
            ev = self.parent
            write_sidecar(best_path, sidecar_at(ev.num_timesteps, best_of_validation={
                "seeds": list(seeds), "mean_reward": float(ev.best_mean_reward)}))
            return True

    class _FixedSeedEval(EvalCb):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.evaluated_seeds: list[list[int]] = []

        def _on_step(self) -> bool:
            due = self.eval_freq > 0 and self.n_calls % self.eval_freq == 0
            if due:
                self.eval_env.env_method("rewind")
            ok = super()._on_step()
            if due:
                self.evaluated_seeds.append(list(self.eval_env.get_attr("played")[0])[:self.n_eval_episodes])
            return ok

    return _FixedSeedEval(eval_env, callback_on_new_best=_BestSidecar(), **kwargs)


@dataclass
class TrainResult:
    model_path: Path
    sidecar_path: Path
    timesteps: int
    training_time_s: float
    sidecar: dict
    model: Any = None
    #: the seeds of each ``eval_freq`` evaluation, in order (all equal: :func:`validation_seeds`)
    evaluated_seeds: list = field(default_factory=list)
    #: the steps asked for (``timesteps`` or the YAML's ``n_timesteps``); on-policy algorithms collect
    #: whole rollouts, so ``timesteps`` may exceed it (:attr:`rollout_steps`)
    requested_timesteps: int = 0
    #: steps per rollout (``n_steps`` × ``n_envs``) of an on-policy algorithm, else None
    rollout_steps: int | None = None
    #: training stopped by ``time_limit_s`` before ``requested_timesteps``
    stopped_by_time_limit: bool = False
    #: ``PATH_checkpoints/`` when checkpoints were written, else None
    checkpoint_dir: Path | None = None
    #: ``PATH_eval/best_model.zip`` when a validation evaluation saved one, else None
    best_model_path: Path | None = None
    #: ``PATH.zip`` existed before and was replaced
    overwrote: bool = False


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


#: kept for agents/rllib.py (moved to :func:`.sidecar.scenario_fields`)
_scenario_fields = scenario_fields


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
          time_limit_s: float | None = None, allow_imports: bool = False, recipe: "Recipe | None" = None) -> TrainResult:
    """Train ``algo`` on ``env_id`` (with ``scenario`` + ``overrides``; None = the id's own scenario) for
    ``timesteps`` steps (None = the YAML's ``n_timesteps``) and save ``out`` (.zip) and its sidecar.

    ``env_config`` is merged over the YAML's ``env_kwargs.config``; ``hyperparams`` replaces single
    YAML keys.  ``checkpoint_freq`` / ``eval_freq`` count total env steps (0 = off).  ``time_limit_s``
    stops training early (the sidecar records the steps actually done).  ``num_threads`` sets
    ``torch.set_num_threads`` (None leaves torch's default).  ``allow_imports``: the hyper-parameter
    YAML may name classes outside the allow-lists of :mod:`.hyperparams` (it is data otherwise).
    ``recipe``: a zoo recipe (:mod:`.zoo`) supplies the hyper-parameters instead of the YAML file (use
    :func:`train_recipe`); the sidecar records it.

    Checkpoints (``PATH_checkpoints/PATH_<steps>_steps.zip``) and the best model of the ``eval_freq``
    evaluations (``PATH_eval/best_model.zip``) get sidecars too.  The evaluations play the fixed seeds
    :func:`validation_seeds` (``eval_episodes``), so "best" compares equal episodes.

    Raises:
        ScenarioError: a seed outside [0, EVAL_SEED_BASE), fewer than 1 timestep or env, TensorBoard
            logs without the ``tensorboard`` package, or a bad env id, scenario or hyper-parameter."""
    out = _check_out(out)
    env_id = check_env_id(env_id)
    if seed < 0 or seed >= EVAL_SEED_BASE:
        raise ScenarioError("--seed", f"expected a training seed in [0, {EVAL_SEED_BASE}), got {seed}")
    if recipe is not None:
        hp: Hyperparams = recipe.resolved_hyperparams(allow_imports)
    else:
        hp = load_hyperparams(algo, env_id, hyperparams_path, hyperparams, allow_imports=allow_imports)
    val_seeds = validation_seeds(eval_episodes) if eval_freq and eval_freq > 0 else None
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
    from stable_baselines3.common.utils import set_random_seed

    set_torch_threads(num_threads)
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

    from stable_baselines3.common.callbacks import BaseCallback, CallbackList

    base_sidecar = {
        "backend": "sb3", "algo": algo, "env_id": env_id, "env_config": recorded_config,
        "wrappers": hp.wrappers, **scenario_fields(sc),
        "observation_space": space_signature(model.observation_space), "env_observation_space": env_sig,
        "action_space": space_signature(model.action_space), "version": __version__,
        "libraries": _library_versions(), "seed": seed, "requested_timesteps": total, "n_envs": n, "vec_env": vec_env,
        "train_seed_range": list(TRAIN_SEED_RANGE), "validation_seeds": val_seeds,
        "hyperparams": {"file": hp.source, "key": hp.key, "entry": hp.raw}, "num_threads": num_threads,
    }
    if recipe is not None:
        base_sidecar |= {"recipe": recipe.sidecar_field(), "description": recipe.description}

    def sidecar_at(steps: int, **extra: Any) -> dict:
        return base_sidecar | {"timesteps": int(steps)} | extra

    callbacks: list = []
    validation = None
    if progress_bar:
        callbacks.append(_progress_callback(total))
    if checkpoint_freq and checkpoint_freq > 0:
        callbacks.append(_checkpoint_callback(sidecar_at, save_freq=max(checkpoint_freq // n, 1),
                                              save_path=str(out.with_suffix("")) + "_checkpoints",
                                              name_prefix=out.stem))
    if val_seeds:
        eval_factory = EnvFactory(env_id, scenario, tuple(ov), config, hp.wrappers, None, monitor=True,
                                  fixed_seeds=val_seeds)
        eval_env = make_vec_env(eval_factory, 1, "dummy")
        log_dir = Path(str(out.with_suffix("")) + "_eval")
        validation = _validation_callback(algo in MASKED_ALGOS, eval_env, sidecar_at, log_dir / "best_model.zip",
                                          val_seeds, n_eval_episodes=len(val_seeds),
                                          eval_freq=max(eval_freq // n, 1), best_model_save_path=str(log_dir),
                                          log_path=str(log_dir), deterministic=True, verbose=verbose)
        callbacks.append(validation)
    if time_limit_s:
        deadline = time.perf_counter() + float(time_limit_s)

        class _Deadline(BaseCallback):
            def _on_step(self) -> bool:
                return time.perf_counter() < deadline

        callbacks.append(_Deadline())

    overwrote = out.exists()
    t0 = time.perf_counter()
    model.learn(total_timesteps=total, callback=CallbackList(callbacks) if callbacks else None,
                tb_log_name=f"{algo}_{out.stem}")
    elapsed = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    venv.close()

    sidecar = sidecar_at(model.num_timesteps, training_time_s=round(elapsed, 3))
    sc_path = write_sidecar(out, sidecar)
    n_steps = getattr(model, "n_steps", None)      # on-policy (PPO, MaskablePPO, A2C): whole rollouts
    ckpt_dir = Path(str(out.with_suffix("")) + "_checkpoints")
    best = Path(str(out.with_suffix("")) + "_eval") / "best_model.zip"
    return TrainResult(out, sc_path, int(model.num_timesteps), elapsed, sidecar, model,
                       validation.evaluated_seeds if validation is not None else [], requested_timesteps=total,
                       rollout_steps=int(n_steps) * n if n_steps else None,
                       stopped_by_time_limit=bool(time_limit_s) and int(model.num_timesteps) < total,
                       checkpoint_dir=ckpt_dir if checkpoint_freq and checkpoint_freq > 0 and ckpt_dir.is_dir() else None,
                       best_model_path=best if val_seeds and best.is_file() else None, overwrote=overwrote)


def train_recipe(recipe: "str | Path | Recipe", out: str | Path | None = None, *,
                 zoo_dir: "str | Path | Sequence[str | Path] | None" = None, **options: Any) -> TrainResult:
    """Train exactly the zoo recipe ``recipe`` (a :class:`~.zoo.Recipe`, a ``.yml`` path or a zoo name:
    ``NAME``, ``zoo/NAME``; docs/agents.md "The agent zoo") and save ``out`` with its sidecar (default
    :func:`~.zoo.default_model_out`: ``zoo_dir/NAME.zip`` when ``zoo_dir`` is given, so the model is
    found there as ``zoo:NAME``; else ``NAME.zip`` in the working directory).  ``options`` are :func:`train`'s run-time keywords that
    do not change what is learned: ``progress_bar``, ``tensorboard_log``, ``checkpoint_freq``,
    ``eval_freq``, ``eval_episodes``, ``num_threads``, ``verbose``, ``time_limit_s``, ``vec_env``,
    ``allow_imports``.

    Raises:
        ScenarioError: an unknown recipe name (the message lists the known ones), a bad recipe, or an
            option that would change the recipe (path ``--recipe``)."""
    from .zoo import Recipe, default_model_out, find_recipe

    bad = sorted(set(options) - set(RUNTIME_OPTIONS))
    if bad:
        raise ScenarioError("--recipe", f"a recipe fixes {bad}; edit a copy of the recipe instead")
    rec = recipe if isinstance(recipe, Recipe) else find_recipe(recipe, zoo_dir)
    return train(rec.env_id, rec.scenario, rec.algo, rec.n_timesteps, out if out is not None else default_model_out(rec, zoo_dir),
                 seed=rec.seed, overrides=rec.overrides, n_envs=None, recipe=rec, **options)


#: keywords of :func:`train` that :func:`train_recipe` accepts (they do not change what is learned)
RUNTIME_OPTIONS = ("progress_bar", "tensorboard_log", "checkpoint_freq", "eval_freq", "eval_episodes", "num_threads",
                   "verbose", "time_limit_s", "vec_env", "allow_imports")


__all__ = ["RUNTIME_OPTIONS", "TRAIN_SEED_RANGE", "TrainResult", "VALIDATION_SEED_RANGE", "set_torch_threads", "train",
           "train_recipe", "validation_seeds"]

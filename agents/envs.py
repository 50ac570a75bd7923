"""Building (vectorised) environments for training and evaluation.

Every env is made with the module-prefixed id ``distllm_env:<id>`` so that worker processes
(``SubprocVecEnv``, Ray env runners) import the package and find the registration
(docs/architecture.md item 2).  The factory is a picklable :class:`EnvFactory`, not a closure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import gymnasium as gym

from ..errors import ScenarioError
from .wrappers import EVAL_SEED_BASE, TrainingSeeds, apply_wrappers


def module_id(env_id: str) -> str:
    """``distllm/X-v0`` → ``distllm_env:distllm/X-v0`` (ids that already carry a module are kept)."""
    return env_id if ":" in env_id else f"distllm_env:{env_id}"


def check_env_id(env_id: str, flag: str = "--env") -> str:
    """The id without a module prefix; :class:`ScenarioError` if it is not a registered id.

    Raises:
        ScenarioError: (path ``flag``) an unregistered environment id."""
    import distllm_env  # noqa: F401  (registers the ids)

    bare = env_id.split(":", 1)[1] if ":" in env_id else env_id
    if bare not in gym.registry:
        from ..envs import registered_ids

        raise ScenarioError(flag, f"unknown environment id {env_id!r}; expected one of {registered_ids()}")
    return bare


def decision_of(env_id: str) -> str:
    """``RequestRouting`` / ``BlockPlacement`` / ``ClientSplit``: the decision of a registered id (from its
    entry point; a user's own id returns its entry point's class name)."""
    from ..envs import ENTRY_POINTS

    ep = str(gym.spec(check_env_id(env_id)).entry_point)
    for name, target in ENTRY_POINTS.items():
        if ep == target:
            return name
    return ep.rsplit(":", 1)[-1]


class FixedSeeds(gym.Wrapper):
    """Plays the scenario seeds ``seeds`` in order (``reset``'s own ``seed`` is ignored), starting from
    the first again after :meth:`rewind`: the validation env of ``train --eval-freq``, so that every
    evaluation plays the same episodes and the "best model" is not seed luck.  ``played`` lists the
    seeds reset since the last rewind."""

    def __init__(self, env: gym.Env, seeds: Sequence[int]):
        super().__init__(env)
        if not seeds:
            raise ScenarioError("--eval-episodes", "expected at least one validation seed")
        self.seeds = [int(s) for s in seeds]
        self._next = 0
        self.played: list[int] = []

    def rewind(self) -> None:
        self._next = 0
        self.played = []

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        s = self.seeds[self._next % len(self.seeds)]
        self._next += 1
        self.played.append(s)
        return self.env.reset(seed=s, options=options)

    def action_masks(self):
        return self.env.get_wrapper_attr("action_masks")()


@dataclass
class EnvFactory:
    """Picklable constructor of one (wrapped) training or evaluation env.

    ``scenario=None`` keeps the id's own scenario (a preset id's, else the env's default);
    ``seed_range`` wraps the env in :class:`TrainingSeeds` (None: plain ``reset(seed=…)`` semantics);
    ``fixed_seeds`` (instead) in :class:`FixedSeeds`;
    ``monitor`` wraps it in SB3's ``Monitor`` (last, so episode statistics see the final rewards)."""

    env_id: str
    scenario: Any = None
    overrides: Sequence[str] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    wrappers: Sequence[Mapping[str, Any]] = ()
    seed_range: tuple[int, int] | None = (0, EVAL_SEED_BASE)
    monitor: bool = False
    monitor_kwargs: Mapping[str, Any] = field(default_factory=dict)
    fixed_seeds: Sequence[int] | None = None

    def kwargs(self) -> dict:
        kw: dict[str, Any] = {}
        if self.scenario is not None:
            kw["scenario"] = self.scenario
        if self.overrides:
            kw["overrides"] = list(self.overrides)
        if self.config:
            kw["config"] = dict(self.config)
        return kw

    def raw(self) -> gym.Env:
        """The env as ``gym.make`` returns it (no wrappers of ours)."""
        return gym.make(module_id(self.env_id), **self.kwargs())

    def __call__(self) -> gym.Env:
        env = apply_wrappers(self.raw(), self.wrappers)
        if self.fixed_seeds is not None:
            env = FixedSeeds(env, self.fixed_seeds)
        elif self.seed_range is not None:
            env = TrainingSeeds(env, *self.seed_range)
        if self.monitor:
            from stable_baselines3.common.monitor import Monitor

            env = Monitor(env, **dict(self.monitor_kwargs))
        return env


def make_vec_env(factory: EnvFactory, n_envs: int, vec_env: str = "dummy", seed: int | None = None):
    """An SB3 ``DummyVecEnv`` / ``SubprocVecEnv`` of ``n_envs`` copies of ``factory``; ``seed`` seeds the
    first reset of env i with ``seed + i`` (SB3's ``VecEnv.seed``).

    Raises:
        ScenarioError: ``vec_env`` is neither ``'dummy'`` nor ``'subproc'``, or a bad env id / config."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if vec_env not in ("dummy", "subproc"):
        raise ScenarioError("--vec-env", f"expected 'dummy' or 'subproc', got {vec_env!r}")
    fns = [factory] * int(n_envs)
    venv = SubprocVecEnv(fns, start_method="spawn") if vec_env == "subproc" and n_envs > 1 else DummyVecEnv(fns)
    if seed is not None:
        venv.seed(seed)
    return venv


__all__ = ["EnvFactory", "FixedSeeds", "check_env_id", "decision_of", "make_vec_env", "module_id"]

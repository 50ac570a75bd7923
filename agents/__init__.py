"""Agents: SB3 / sb3-contrib and Ray RLlib training and evaluation (installed as ``distllm_env.agents``;
docs/agents.md).

* :func:`train` (``distllm-env train``) — PPO, MaskablePPO, A2C, DQN with RL-Zoo-format YAML
  hyper-parameters (``agents/<algo>.yml``), vectorised envs, progress bar, TensorBoard, checkpoints and
  the sidecar ``PATH.json`` (docs/contracts.md §5);
* :func:`evaluate` (``distllm-env evaluate``) — a model or a user policy against every baseline of its
  decision on held-out seeds (≥ 10 000), equal (zero) allocation delays, table + PNG;
* :class:`LearnedModel`, :class:`LearnedEnvPolicy`, :class:`LearnedRouter`, :class:`LearnedPlacement` —
  trained models as env policies or as simulator policies (usable with ``simulate``, ``compare`` and
  ``distllm_env.testing.assert_beats``);
* wrappers: :class:`RoutingFeatures`, :class:`TrainingSeeds`, :class:`MaskInObservation`;
* :mod:`distllm_env.agents.rllib` — ``train_rllib``, ``MaskedPPOTorchRLModule``, ``register_rllib_env``.

torch, SB3 and Ray are imported only by the functions that need them; names are resolved lazily.

``train`` and ``evaluate`` are both functions of this package and the names of the submodules that
define them.  The package attribute is always the *function*: importing the submodule (``import
distllm_env.agents.train``, ``from distllm_env.agents.train import TRAIN_SEED_RANGE``) does not
replace it (Python's import system would, so that a second ``from distllm_env.agents import train``
returned the module).  The submodules stay reachable through ``sys.modules`` and ``from … import``.
"""

from __future__ import annotations

import importlib
import sys
import types

_EXPORTS = {
    "train": "train", "TrainResult": "train", "train_recipe": "train",
    "evaluate": "evaluate", "EvaluationResult": "evaluate", "baseline_specs": "evaluate",
    "LearnedModel": "learned", "LearnedEnvPolicy": "learned", "LearnedRouter": "learned",
    "LearnedPlacement": "learned", "learned_policy": "learned",
    "RoutingFeatures": "wrappers", "TrainingSeeds": "wrappers", "MaskInObservation": "wrappers",
    "EVAL_SEED_BASE": "wrappers",
    "ModelMismatchError": "sidecar", "read_sidecar": "sidecar", "space_signature": "sidecar",
    "load_hyperparams": "hyperparams", "ALGOS": "hyperparams",
    "EnvFactory": "envs",
}


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'distllm_env.agents' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


#: exported functions that share their name with the submodule defining them
_SHADOWED = frozenset(n for n, mod in _EXPORTS.items() if n == mod)


class _AgentsPackage(types.ModuleType):
    """The package's module type: the import system's ``setattr(package, "train", <submodule>)`` after a
    submodule import is ignored for the names in :data:`_SHADOWED`, so they stay the functions."""

    def __setattr__(self, name: str, value) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _AgentsPackage

__all__ = sorted(_EXPORTS)

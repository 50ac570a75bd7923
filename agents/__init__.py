"""Agents: SB3 / sb3-contrib and Ray RLlib training and evaluation (installed as ``distllm_env.agents``;
docs/agents.md).

* :func:`train` (``distllm-env train``) — PPO, MaskablePPO, A2C, DQN with RL-Zoo-format YAML
  hyper-parameters (``agents/<algo>.yml``), vectorised envs, progress bar, TensorBoard, checkpoints and
  the sidecar ``PATH.json`` (CONTRACTS.md §5);
* :func:`evaluate` (``distllm-env evaluate``) — a model or a user policy against every baseline of its
  decision on held-out seeds (≥ 10 000), equal (zero) allocation delays, table + PNG;
* :class:`LearnedModel`, :class:`LearnedEnvPolicy`, :class:`LearnedRouter`, :class:`LearnedPlacement` —
  trained models as env policies or as simulator policies (usable with ``simulate``, ``compare`` and
  ``distllm_env.testing.assert_beats``);
* wrappers: :class:`RoutingFeatures`, :class:`TrainingSeeds`, :class:`MaskInObservation`;
* :mod:`distllm_env.agents.rllib` — ``train_rllib``, ``MaskedPPOTorchRLModule``, ``register_rllib_env``.

torch, SB3 and Ray are imported only by the functions that need them; names are resolved lazily.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "train": "train", "TrainResult": "train",
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


__all__ = sorted(_EXPORTS)

"""The model sidecar ``PATH.json`` next to ``PATH.zip`` (docs/contracts.md §5; docs/agents.md).

``train`` writes it; ``evaluate`` (and :func:`distllm_env.agents.load_model`) read it and refuse a
model whose environment or observation space does not match (:class:`ModelMismatchError`, exit
code 2 in the CLI).  Fields:

* ``format`` (``distllm-env-model/1``), ``backend`` (``sb3`` | ``rllib``), ``algo``;
* ``env_id``, ``env_config`` (the env's config with policy objects replaced by names), ``wrappers``
  (``[{"path", "kwargs"}]`` applied in order after ``gym.make``);
* ``scenario``, ``overrides``, ``scenario_hash`` of the training scenario;
* ``observation_space`` / ``env_observation_space`` / ``action_space``: :func:`space_signature` of
  what the model sees (after the wrappers), of the raw env, and of the actions;
* ``version`` (distllm-env), library versions, ``seed``, ``timesteps``, ``train_seed_range``,
  ``hyperparams`` and ``training_time_s``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from gymnasium import spaces

from ..errors import ScenarioError
from ..outputs import json_safe

FORMAT = "distllm-env-model/1"


class ModelMismatchError(ScenarioError):
    """A saved model does not fit the environment it is asked to run on (bad input: exit code 2)."""


def _digest(arr: np.ndarray) -> str:
    a = np.ascontiguousarray(np.asarray(arr, dtype=np.float64))
    return hashlib.sha256(a.tobytes()).hexdigest()[:16]


def space_signature(space: spaces.Space) -> dict:
    """A JSON-able description of a space, exact enough to detect any change of keys, shapes,
    dtypes or bounds (bounds enter through a SHA-256 digest, plus their min/max for reading)."""
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_signature(s) for k, s in space.spaces.items()}}
    if isinstance(space, spaces.Box):
        low, high = np.asarray(space.low), np.asarray(space.high)
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low_min": float(low.min()) if low.size else 0.0, "high_max": float(high.max()) if high.size else 0.0,
                "bounds_digest": _digest(np.concatenate([low.ravel(), high.ravel()]))}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist()}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    return {"type": type(space).__name__, "repr": repr(space)}


def signature_digest(sig: Mapping) -> str:
    return hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest()[:16]


def describe_difference(expected: Mapping, got: Mapping, path: str = "") -> str:
    """The first difference between two signatures, as text (``"" `` if equal)."""
    if expected == got:
        return ""
    if expected.get("type") != got.get("type"):
        return f"{path or 'space'}: {expected.get('type')} vs {got.get('type')}"
    if expected.get("type") == "Dict":
        a, b = expected["spaces"], got["spaces"]
        if list(a) != list(b):
            missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            return f"{path or 'Dict'} keys differ (missing {missing}, unexpected {extra})"
        for k in a:
            d = describe_difference(a[k], b[k], f"{path}.{k}" if path else k)
            if d:
                return d
        return ""
    first = ("shape", "dtype", "n", "nvec", "start")
    for k in [k for k in first if k in expected or k in got] + sorted((set(expected) | set(got)) - set(first)):
        if expected.get(k) != got.get(k):
            return f"{path or 'space'}: {k} {expected.get(k)!r} vs {got.get(k)!r}"
    return ""


def sidecar_path(model_path: str | Path) -> Path:
    """``x.zip`` → ``x.json``; a directory (an RLlib checkpoint) ``d`` → ``d.json``."""
    p = Path(model_path)
    if p.suffix == ".zip":
        return p.with_suffix(".json")
    return p.parent / (p.name + ".json")


def write_sidecar(model_path: str | Path, data: Mapping[str, Any]) -> Path:
    path = sidecar_path(model_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT} | dict(data)
    path.write_text(json.dumps(json_safe(payload), indent=1, sort_keys=False) + "\n")
    return path


def read_sidecar(model_path: str | Path) -> dict:
    """The sidecar ``PATH.json`` of model ``model_path`` as a dict.

    Raises:
        ModelMismatchError: no sidecar, not valid JSON, a wrong ``format``, or a missing field."""
    path = sidecar_path(model_path)
    if not path.is_file():
        raise ModelMismatchError("--model", f"no sidecar {str(path)!r} next to {str(model_path)!r}; models trained "
                                            "with 'distllm-env train' have one (docs/contracts.md §5)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelMismatchError(str(path), f"not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelMismatchError(f"{path}.format", f"expected {FORMAT!r}, got {data.get('format') if isinstance(data, dict) else data!r}")
    for key in ("env_id", "algo", "observation_space", "action_space", "env_config", "wrappers", "backend"):
        if key not in data:
            raise ModelMismatchError(f"{path}.{key}", "missing field")
    return data


def check_space(sidecar: Mapping, field: str, space: spaces.Space, what: str) -> None:
    """Raise :class:`ModelMismatchError` unless ``space`` has the signature stored in ``sidecar[field]``."""
    got = space_signature(space)
    diff = describe_difference(sidecar[field], got)
    if diff:
        raise ModelMismatchError(f"sidecar.{field}", f"{what} does not match the model's: {diff}")


__all__ = ["FORMAT", "ModelMismatchError", "check_space", "describe_difference", "read_sidecar", "sidecar_path",
           "signature_digest", "space_signature", "write_sidecar"]

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
from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium import spaces

from ..errors import ScenarioError
from ..outputs import json_safe

FORMAT = "distllm-env-model/1"
#: gymnasium's ``FlattenObservation``, a candidate wrapper for a plain SB3 zip (:func:`plain_sidecar`)
FLATTEN = {"path": "gymnasium.wrappers:FlattenObservation", "kwargs": {}}


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
        raise ModelMismatchError("model", f"no sidecar {str(path)!r} next to {str(model_path)!r}; models trained "
                                            "with 'distllm-env train' have one (docs/contracts.md §5); for a plain SB3 "
                                            "zip give the env id it was trained on (--env ID, optionally --scenario "
                                            "and --wrapper; Python: env_id=, scenario=, wrappers=)")
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


def scenario_fields(sc) -> dict:
    """How to rebuild a training scenario: its preset name or path plus overrides, or (for a scenario
    given as a mapping or object) its raw YAML mapping, which already includes the overrides."""
    from ..yaml_safe import load_yaml_text

    out = {"scenario_name": sc.name, "scenario_hash": sc.hash}
    if sc.source != "<dict>":
        return out | {"scenario": sc.source, "overrides": list(sc.overrides), "scenario_raw": None}
    return out | {"scenario": None, "overrides": [], "scenario_raw": load_yaml_text(sc.to_yaml(), "scenario")}


def detect_algo(model_path: str | Path) -> str:
    """The algorithm name (``ppo``, ``maskable_ppo``, ``a2c``, ``dqn``) of an SB3 zip, read from the
    policy class module and the algorithm fields of its ``data`` entry (nothing is unpickled).

    Raises:
        ModelMismatchError: (path ``--model``) not an SB3 zip, or an algorithm outside that list."""
    import zipfile

    try:
        with zipfile.ZipFile(model_path) as z:
            data = json.loads(z.read("data"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelMismatchError("model", f"{str(model_path)!r} is not a stable-baselines3 model zip ({exc})") from None
    policy = data.get("policy_class") if isinstance(data, dict) else None
    module = str(policy.get("__module__", "")) if isinstance(policy, dict) else ""
    if module.startswith("sb3_contrib.common.maskable"):
        return "maskable_ppo"
    if module.startswith("stable_baselines3.dqn"):
        return "dqn"
    if module.startswith("stable_baselines3.common.policies"):
        return "ppo" if "clip_range" in data else "a2c"
    raise ModelMismatchError("model", f"cannot tell the algorithm of {str(model_path)!r} (policy class module "
                                        f"{module!r}); expected a PPO, MaskablePPO, A2C or DQN zip")


def plain_sidecar(model_path: str | Path, env_id: str, scenario: Any = None, overrides: Sequence[str] = (),
                  env_config: Mapping[str, Any] | None = None, algo: str | None = None,
                  wrappers: Sequence[Mapping[str, Any]] | None = None) -> dict:
    """A sidecar for a plain SB3 zip trained outside ``distllm-env train`` (no ``PATH.json``): the model
    is taken to act on ``env_id`` (with ``scenario`` + ``overrides``, ``env_config``) behind
    ``wrappers`` (parsed ``[{"path", "kwargs"}]``); None tries, in order, no wrapper, the ``env_wrapper``
    list of ``agents/<algo>.yml`` for that id, gymnasium's ``FlattenObservation`` alone, then that list
    followed by ``FlattenObservation`` (a common plain-SB3 set-up with ``MlpPolicy``), and keeps the
    first whose observation space equals the model's.  ``algo`` None:
    :func:`detect_algo`.  The result has ``"sidecar": "synthesized"``; nothing is written.

    Raises:
        ModelMismatchError: the model's observation or action space fits none of the candidates (the
            message names the first difference), or an unknown algorithm.
        ScenarioError: an unregistered ``env_id`` (path ``--env``), a bad scenario or config."""
    from .envs import EnvFactory, check_env_id
    from .hyperparams import algo_class, load_hyperparams

    env_id = check_env_id(env_id)
    algo = algo or detect_algo(model_path)
    model = algo_class(algo).load(str(model_path), device="cpu")
    want = space_signature(model.observation_space)
    if wrappers is not None:
        candidates = [list(wrappers)]
    else:
        candidates = [[]]
        try:
            shipped = load_hyperparams(algo, env_id).wrappers
        except ScenarioError:
            shipped = []
        if shipped:
            candidates.append(shipped)
        candidates.append([FLATTEN])
        if shipped:
            candidates.append(list(shipped) + [FLATTEN])
    diffs = []
    for wr in candidates:
        factory = EnvFactory(env_id, scenario, tuple(overrides or ()), dict(env_config or {}), wr, seed_range=None)
        try:
            env = factory()
        except (ValueError, TypeError, NotImplementedError) as exc:
            if wrappers is not None or isinstance(exc, ScenarioError):
                raise
            diffs.append(f"with wrappers {[w['path'].rsplit(':', 1)[-1] for w in wr]}: {exc}")   # e.g. unflattenable
            continue
        try:
            got = space_signature(env.observation_space)
            if got != want:
                diffs.append(f"with wrappers {[w['path'].rsplit(':', 1)[-1] for w in wr]}: "
                             f"{describe_difference(want, got)}")
                continue
            check_space({"action_space": space_signature(model.action_space)}, "action_space", env.action_space,
                        f"the action space of {env_id}")
            base = env.unwrapped
            raw_sig = space_signature(base.observation_space)
            return {"format": FORMAT, "sidecar": "synthesized", "backend": "sb3", "algo": algo, "env_id": env_id,
                    "env_config": base.recordable_config(), "wrappers": [dict(w) for w in wr],
                    **scenario_fields(base.scenario), "observation_space": want, "env_observation_space": raw_sig,
                    "action_space": space_signature(model.action_space), "version": None, "seed": None,
                    "timesteps": int(getattr(model, "num_timesteps", 0) or 0), "training_time_s": None}
        finally:
            env.close()
    raise ModelMismatchError("model", f"the observation space of {str(model_path)!r} does not fit {env_id} "
                                        f"({'; '.join(diffs)}); was it trained on another env id, config or scenario?")


__all__ = ["FLATTEN", "FORMAT", "ModelMismatchError", "check_space", "describe_difference", "detect_algo", "plain_sidecar", "read_sidecar",
           "scenario_fields", "sidecar_path",
           "signature_digest", "space_signature", "write_sidecar"]

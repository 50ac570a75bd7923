"""Hyper-parameters in the RL-Zoo YAML format (docs/agents.md).

One file per algorithm, ``agents/<algo>.yml``, keyed by environment id, with a ``default`` entry for
ids that have none.  Lookup order for ``--env ID``: the exact id, then the decision's base id
(``distllm/RequestRouting-PaperGtsce-v0`` → ``distllm/RequestRouting-v0``), then ``default``.

Keys follow rl-baselines3-zoo (``docs/guide/config.md`` of DLR-RM/rl-baselines3-zoo, as summarised in
docs/agents.md): constructor arguments of the algorithm, plus the zoo keys

* ``n_timesteps`` (used when ``--timesteps`` is not given), ``policy``, ``n_envs``;
* ``policy``: an SB3 policy name (``MlpPolicy``, ``MultiInputPolicy``) or, as in the zoo, a dotted class
  path such as ``sb3_contrib.common.maskable.policies.MaskableActorCriticPolicy``;
* ``policy_kwargs``: a mapping, or a string such as ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"``.
  The zoo ``eval``s that string (with ``nn`` = ``torch.nn`` and ``th`` = ``torch`` in scope); here it is
  parsed with :mod:`ast` and only ``dict(...)``, literals, ``nn.<Name>`` / ``th.nn.<Name>`` /
  ``torch.nn.<Name>`` (``torch.nn.Module`` classes, e.g. activations) and ``th.optim.<Name>`` /
  ``torch.optim.<Name>`` (optimizers) are accepted;
* schedules ``lin_<value>`` (linear decay from value to 0 over training), as in the zoo;
* ``env_wrapper``: a dotted path ``module.Class`` (what the zoo's ``get_wrapper_class`` imports; the
  shipped files use it, so they work in rl_zoo3 too; ``module:Class`` is accepted here as well), or a
  list of such paths or ``{path: kwargs}`` mappings, applied in order;

**The YAML is data** (README, "Trust boundary"): class paths in it are resolved only from an
allow-list (:data:`ALLOWED_WRAPPER_MODULES` for ``env_wrapper``, :data:`ALLOWED_POLICY_PACKAGES` for a
dotted ``policy``, ``torch.nn`` / ``torch.optim`` classes in ``policy_kwargs``), unless the user opts in
with ``allow_imports=True`` (CLI ``--allow-import``).  Nothing is ``eval``-ed.
* ``env_kwargs``: keyword arguments of ``gym.make`` (for these envs ``config`` and ``overrides``);
* ``monitor_kwargs``: keyword arguments of SB3's ``Monitor``.

Zoo keys this project does not support (``normalize``, ``frame_stack``, ``vec_env_wrapper``,
``callback``) raise :class:`~distllm_env.errors.ScenarioError` naming the key, rather than being
ignored silently.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import ScenarioError
from ..yaml_safe import load_yaml_file, load_yaml_text

#: algorithm name -> (module, class); SB3 / sb3-contrib are imported lazily
ALGOS: dict[str, tuple[str, str]] = {
    "ppo": ("stable_baselines3", "PPO"),
    "a2c": ("stable_baselines3", "A2C"),
    "dqn": ("stable_baselines3", "DQN"),
    "maskable_ppo": ("sb3_contrib", "MaskablePPO"),
}

#: algorithms whose training and evaluation use the env's ``action_masks()``
MASKED_ALGOS = frozenset({"maskable_ppo"})

#: zoo keys consumed here (everything else goes to the algorithm's constructor)
ZOO_KEYS = ("n_timesteps", "policy", "n_envs", "env_wrapper", "env_kwargs", "monitor_kwargs")
UNSUPPORTED_ZOO_KEYS = ("normalize", "frame_stack", "vec_env_wrapper", "callback", "normalize_kwargs")

HYPERPARAMS_DIR = Path(__file__).resolve().parent

#: modules whose classes ``env_wrapper`` may name without ``allow_imports``
ALLOWED_WRAPPER_MODULES = ("distllm_env.agents.wrappers", "gymnasium.wrappers")
#: packages whose policy classes a dotted ``policy`` may name without ``allow_imports``
ALLOWED_POLICY_PACKAGES = ("stable_baselines3", "sb3_contrib")


def algo_class(algo: str):
    """The SB3 / sb3-contrib class of ``algo`` (imports it).

    Raises:
        ScenarioError: (path ``--algo``) unknown algorithm, or its package (the ``rl`` extra) is not
            installed."""
    from ..errors import PolicyLoadError
    from ..imports import load_object

    if algo not in ALGOS:
        raise ScenarioError("--algo", f"expected one of {sorted(ALGOS)}, got {algo!r}")
    module, name = ALGOS[algo]
    try:
        return load_object(f"{module}:{name}", field="--algo")
    except PolicyLoadError as exc:  # pragma: no cover - depends on the installed extras
        raise ScenarioError("--algo", f"{algo} needs the 'rl' extra (pip install 'distllm-env[rl]'): {exc}") from None


class LinearSchedule:
    """The zoo's ``lin_<value>``: value × progress_remaining (1 at the start of training, 0 at the end).

    A class rather than a lambda so that saved models unpickle across processes."""

    def __init__(self, initial: float):
        self.initial = float(initial)

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.initial

    def __repr__(self) -> str:
        return f"lin_{self.initial:g}"


_LIN = re.compile(r"^lin_([-+0-9.eE]+)$")


def parse_schedule(key: str, value: Any) -> Any:
    """``lin_<value>`` → :class:`LinearSchedule`; anything else unchanged.

    Raises:
        ScenarioError: a string value that is not ``lin_<number>``."""
    if isinstance(value, str):
        m = _LIN.match(value.strip())
        if m:
            try:
                return LinearSchedule(float(m.group(1)))
            except ValueError:
                pass
            raise ScenarioError(f"hyperparams.{key}", f"expected lin_<number>, got {value!r}")
    return value


def parse_policy_kwargs(value: Any, path: str = "hyperparams.policy_kwargs") -> dict:
    """A zoo ``policy_kwargs`` value (mapping or ``"dict(...)"`` string) as a dict.

    Strings are parsed with :mod:`ast`: ``dict(k=v, …)`` / ``{…}`` / lists / tuples / numbers / strings /
    booleans / None, and ``nn.<Name>`` resolved to ``torch.nn.<Name>`` (e.g. ``activation_fn=nn.ReLU``).
    Nothing is executed.

    Raises:
        ScenarioError: (path ``path``) neither a mapping nor a ``dict(...)`` string, or a string that
            does not parse to a dict of literals."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): _resolve_nn(v, f"{path}.{k}") for k, v in value.items()}
    if not isinstance(value, str):
        raise ScenarioError(path, f"expected a mapping or a 'dict(...)' string, got {value!r}")
    try:
        tree = ast.parse(value.strip(), mode="eval")
    except SyntaxError as exc:
        raise ScenarioError(path, f"cannot parse {value!r}: {exc.msg}") from None
    out = _eval_node(tree.body, path)
    if not isinstance(out, dict):
        raise ScenarioError(path, f"expected dict(...), got {value!r}")
    return out


def _resolve_nn(v: Any, path: str) -> Any:
    if isinstance(v, str) and v.startswith("nn."):
        return _nn_attr(v[3:], path)
    return v


def _nn_attr(name: str, path: str):
    try:
        import torch.nn as nn
    except ImportError:  # pragma: no cover
        raise ScenarioError(path, "nn.* needs torch (the 'rl' extra)") from None
    obj = getattr(nn, name, None)
    if obj is None:
        raise ScenarioError(path, f"torch.nn has no {name!r}")
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ScenarioError(path, f"torch.nn.{name} is not a layer or activation class (torch.nn.Module)")
    return obj


def _eval_node(node: ast.AST, path: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_eval_node(e, path) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_eval_node(k, path): _eval_node(v, path) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval_node(node.operand, path)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _eval_node(kw.value, f"{path}.{kw.arg}") for kw in node.keywords}
    if isinstance(node, ast.Attribute):
        dotted = ast.unparse(node)
        for prefix, kind in (("nn.", "nn"), ("th.nn.", "nn"), ("torch.nn.", "nn"), ("th.optim.", "optim"),
                             ("torch.optim.", "optim")):
            if dotted.startswith(prefix) and "." not in dotted[len(prefix):]:
                return _nn_attr(dotted[len(prefix):], path) if kind == "nn" else _optim_attr(dotted[len(prefix):], path)
    raise ScenarioError(path, f"unsupported expression {ast.unparse(node)!r}; use dict(...), literals, nn.<Name> "
                              "and th.optim.<Name>")


def _optim_attr(name: str, path: str):
    try:
        import torch.optim as optim
    except ImportError:  # pragma: no cover
        raise ScenarioError(path, "th.optim.* needs torch (the 'rl' extra)") from None
    obj = getattr(optim, name, None)
    if not (isinstance(obj, type) and issubclass(obj, optim.Optimizer)):
        raise ScenarioError(path, f"torch.optim has no optimizer {name!r}")
    return obj


def parse_wrappers(value: Any, path: str = "hyperparams.env_wrapper", allow_imports: bool = False) -> list[dict]:
    """Zoo ``env_wrapper`` → ``[{"path": "module:Class", "kwargs": {...}}, …]`` (``module.Class``, the
    zoo's form, is normalised to ``module:Class``).  Without ``allow_imports`` a class outside
    :data:`ALLOWED_WRAPPER_MODULES` raises :class:`ScenarioError` (nothing is imported here)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            name, kwargs = item, {}
        elif isinstance(item, Mapping) and len(item) == 1:
            name, kwargs = next(iter(item.items()))
            kwargs = dict(kwargs or {})
        elif isinstance(item, Mapping) and "path" in item:
            name, kwargs = item["path"], dict(item.get("kwargs") or {})
        else:
            raise ScenarioError(f"{path}.{i}", f"expected 'module:Class' or {{module:Class: kwargs}}, got {item!r}")
        name = str(name)
        if ":" not in name:
            mod, _, cls = name.rpartition(".")
            if not mod:
                raise ScenarioError(f"{path}.{i}", f"expected a full import path, got {name!r}")
            name = f"{mod}:{cls}"
        if not allow_imports and name.partition(":")[0] not in ALLOWED_WRAPPER_MODULES:
            raise ScenarioError(f"{path}.{i}", f"{name!r} is not in the allow-list of wrapper modules "
                                               f"{list(ALLOWED_WRAPPER_MODULES)}; agent YAML is data: pass --allow-import "
                                               "(allow_imports=True) to import other classes")
        out.append({"path": name, "kwargs": kwargs})
    return out


def resolve_policy(value: Any, path: str = "hyperparams.policy", allow_imports: bool = False) -> Any:
    """The zoo's ``policy``: a name such as ``MlpPolicy`` (returned unchanged: SB3 resolves it) or a
    dotted class path, imported when it lies in :data:`ALLOWED_POLICY_PACKAGES` (or with
    ``allow_imports``) and is an SB3 ``BasePolicy`` subclass.  Raises :class:`ScenarioError`."""
    value = str(value)
    if "." not in value and ":" not in value:
        return value
    from ..errors import PolicyLoadError
    from ..imports import load_object

    top = value.replace(":", ".").split(".")[0]
    if not allow_imports and top not in ALLOWED_POLICY_PACKAGES:
        raise ScenarioError(path, f"{value!r} is not in the allow-list of policy packages {list(ALLOWED_POLICY_PACKAGES)}; "
                                  "agent YAML is data: pass --allow-import (allow_imports=True) to import other classes")
    try:
        obj = load_object(value, field=path)
    except PolicyLoadError as exc:
        raise ScenarioError(path, str(exc).removeprefix(f"{path}: ")) from None
    from stable_baselines3.common.policies import BasePolicy

    if not (isinstance(obj, type) and issubclass(obj, BasePolicy)):
        raise ScenarioError(path, f"{value!r} is not an SB3 policy class")
    return obj


@dataclass
class Hyperparams:
    """Resolved hyper-parameters of one (algorithm, env id) pair."""

    algo: str
    env_id: str
    key: str                      # the YAML entry used (env id, base id or "default")
    source: str                   # file the entry came from
    policy: str
    n_envs: int
    n_timesteps: int | None
    wrappers: list[dict]
    env_kwargs: dict
    monitor_kwargs: dict
    policy_kwargs: dict
    algo_kwargs: dict             # everything else, schedules parsed
    raw: dict = field(repr=False)  # the YAML entry as written (for the sidecar)
    policy_class: Any = field(default=None, repr=False)  # ``policy`` resolved (a name, or an SB3 policy class)

    def constructor_kwargs(self) -> dict:
        """Keyword arguments of the algorithm's constructor (policy and env excluded)."""
        out = dict(self.algo_kwargs)
        if self.policy_kwargs:
            out["policy_kwargs"] = dict(self.policy_kwargs)
        return out


def base_env_id(env_id: str) -> str:
    """``distllm/RequestRouting-PaperGtsce-v0`` → ``distllm/RequestRouting-v0`` (ids without a preset
    part are returned unchanged)."""
    m = re.match(r"^(?P<ns>[^/]+/)?(?P<dec>[A-Za-z0-9]+)(?:-[A-Za-z0-9]+)?-v(?P<v>\d+)$", env_id)
    if not m:
        return env_id
    return f"{m.group('ns') or ''}{m.group('dec')}-v{m.group('v')}"


def hyperparams_file(algo: str, directory: str | Path | None = None) -> Path:
    return Path(directory or HYPERPARAMS_DIR) / f"{algo}.yml"


def load_hyperparams(algo: str, env_id: str, path: str | Path | None = None,
                     overrides: Mapping[str, Any] | None = None, allow_imports: bool = False) -> Hyperparams:
    """Hyper-parameters for ``algo`` on ``env_id`` from ``path`` (a YAML file) or the shipped
    ``agents/<algo>.yml``; ``overrides`` (e.g. from ``--hyperparams k=v``) replace single keys.
    ``allow_imports``: resolve class paths outside the allow-lists (module docstring).  Raises
    :class:`ScenarioError` naming the file, entry and key of any bad value."""
    if algo not in ALGOS:
        raise ScenarioError("--algo", f"expected one of {sorted(ALGOS)}, got {algo!r}")
    file = Path(path) if path is not None else hyperparams_file(algo)
    if not file.is_file():
        raise ScenarioError("--conf-file", f"hyper-parameter file {str(file)!r} does not exist")
    data = load_yaml_file(file) or {}
    if not isinstance(data, Mapping):
        raise ScenarioError(str(file), "expected a mapping of env ids to hyper-parameters")
    for key in (env_id, base_env_id(env_id), "default"):
        if key in data:
            break
    else:
        raise ScenarioError(str(file), f"no entry for {env_id!r} and no 'default' entry")
    return hyperparams_from_entry(algo, env_id, data[key], key=key, source=str(file), prefix=f"{file.name}:{key}",
                                  overrides=overrides, allow_imports=allow_imports)


def hyperparams_from_entry(algo: str, env_id: str, entry: Any, *, key: str, source: str, prefix: str,
                           overrides: Mapping[str, Any] | None = None, allow_imports: bool = False) -> Hyperparams:
    """:class:`Hyperparams` from one RL-Zoo entry (a mapping of zoo keys), e.g. a zoo recipe's
    ``hyperparams`` (:mod:`distllm_env.agents.zoo`).  ``prefix`` names the entry in error paths.

    Raises:
        ScenarioError: (path ``prefix.<key>``) the entry is not a mapping, or any bad value."""
    if algo not in ALGOS:
        raise ScenarioError("--algo", f"expected one of {sorted(ALGOS)}, got {algo!r}")
    if entry is not None and not isinstance(entry, Mapping):
        raise ScenarioError(prefix, f"expected a mapping of hyper-parameters, got {entry!r}")
    entry = dict(entry or {})
    for k, v in dict(overrides or {}).items():
        entry[k] = v
    for k in UNSUPPORTED_ZOO_KEYS:
        if k in entry:
            raise ScenarioError(f"{prefix}.{k}", "this zoo key is not supported by distllm-env train "
                                                 "(observation scaling is done by the env_wrapper feature wrappers)")
    n_envs = entry.get("n_envs", 1)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ScenarioError(f"{prefix}.n_envs", f"expected an integer ≥ 1, got {n_envs!r}")
    n_ts = entry.get("n_timesteps")
    if n_ts is not None:
        try:
            n_ts = int(float(n_ts))
        except (TypeError, ValueError):
            raise ScenarioError(f"{prefix}.n_timesteps", f"expected a number, got {n_ts!r}") from None
    env_kwargs = dict(entry.get("env_kwargs") or {})
    bad = set(env_kwargs) - {"config", "overrides"}
    if bad:
        raise ScenarioError(f"{prefix}.env_kwargs", f"expected only 'config' and 'overrides', got {sorted(bad)}")
    algo_kwargs = {k: parse_schedule(k, v) for k, v in entry.items() if k not in ZOO_KEYS and k != "policy_kwargs"}
    return Hyperparams(
        algo=algo, env_id=env_id, key=key, source=source, policy=str(entry.get("policy", "MultiInputPolicy")),
        n_envs=n_envs, n_timesteps=n_ts,
        wrappers=parse_wrappers(entry.get("env_wrapper"), f"{prefix}.env_wrapper", allow_imports),
        env_kwargs=env_kwargs, monitor_kwargs=dict(entry.get("monitor_kwargs") or {}),
        policy_kwargs=parse_policy_kwargs(entry.get("policy_kwargs"), f"{prefix}.policy_kwargs"),
        algo_kwargs=algo_kwargs, raw=entry,
        policy_class=resolve_policy(entry.get("policy", "MultiInputPolicy"), f"{prefix}.policy", allow_imports))


def parse_assignments(items: list[str], flag: str) -> dict:
    """``["k=v", …]`` → ``{k: value}`` (for ``--hyperparams`` and ``--env-config``).

    Each value is read as YAML data by :func:`distllm_env.yaml_safe.load_yaml_text` (inert data,
    YAML 1.2 floats: ``1e3`` is a number), an empty value as ``None``.

    Raises:
        ScenarioError: an item without ``=`` or with an empty key (path ``flag``), or a value that
            is not valid YAML data (path ``FLAG KEY``)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ScenarioError(flag, f"expected KEY=VALUE, got {item!r}")
        k, _, v = item.partition("=")
        k = k.strip()
        if not k:
            raise ScenarioError(flag, f"expected KEY=VALUE, got {item!r}")
        out[k] = load_yaml_text(v, f"{flag} {k}") if v.strip() else None
    return out


__all__ = ["ALGOS", "Hyperparams", "LinearSchedule", "MASKED_ALGOS", "algo_class", "base_env_id",
           "hyperparams_file", "hyperparams_from_entry", "load_hyperparams", "parse_assignments", "parse_policy_kwargs", "parse_schedule",
           "parse_wrappers", "resolve_policy", "ALLOWED_POLICY_PACKAGES", "ALLOWED_WRAPPER_MODULES"]

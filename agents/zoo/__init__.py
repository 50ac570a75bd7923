"""The agent zoo (docs/agents.md, "The agent zoo"): training recipes and the small models trained from them.

A zoo directory holds, per entry ``NAME``:

* ``NAME.yml`` — the *recipe*: ``description``, ``env_id``, ``algo``, ``seed`` (a training seed in
  [0, 10 000)), optional ``scenario`` / ``overrides``, and ``hyperparams``: one RL-Zoo entry as in
  ``agents/<algo>.yml`` (:mod:`distllm_env.agents.hyperparams`), which carries the env kwargs
  (``env_kwargs``), the wrappers (``env_wrapper``) and the total timesteps (``n_timesteps``, required);
* ``NAME.zip`` + ``NAME.json`` — the model ``distllm-env train --zoo NAME`` wrote from it, and its
  sidecar (:mod:`distllm_env.agents.sidecar`; the sidecar's ``recipe`` field names the recipe).

The shipped zoo is this package's folder (:data:`ZOO_DIR`, installed as package data).  Other
directories are searched first: the ``zoo_dir`` argument of every function here, then the
``os.pathsep``-separated list in the environment variable :data:`ZOO_DIR_ENV`; a name found in an
earlier directory hides the same name further on.  Recipes are data: loading one imports nothing
(:func:`distllm_env.yaml_safe.load_yaml_file`).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ...errors import ScenarioError
from ...yaml_safe import load_yaml_file

#: the shipped zoo (package data of ``distllm_env.agents.zoo``)
ZOO_DIR = Path(__file__).resolve().parent
#: environment variable: extra zoo directories searched before the shipped one (``os.pathsep``-separated)
ZOO_DIR_ENV = "DISTLLM_ENV_ZOO_DIR"
#: prefix of a zoo model in ``--model`` / :class:`~distllm_env.agents.learned.LearnedModel`
MODEL_PREFIX = "zoo:"

REQUIRED_KEYS = ("description", "env_id", "algo", "seed", "hyperparams")
OPTIONAL_KEYS = ("scenario", "overrides")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")



def zoo_dirs(zoo_dir: "str | Path | Sequence[str | Path] | None" = None) -> list[Path]:
    """The directories searched, in order: ``zoo_dir`` (one or several), :data:`ZOO_DIR_ENV`, :data:`ZOO_DIR`."""
    out: list[Path] = []
    if zoo_dir is not None:
        out += [Path(zoo_dir)] if isinstance(zoo_dir, (str, Path)) else [Path(d) for d in zoo_dir]
    out += [Path(d) for d in os.environ.get(ZOO_DIR_ENV, "").split(os.pathsep) if d.strip()]
    out.append(ZOO_DIR)
    seen, unique = set(), []
    for d in out:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


@dataclass
class Recipe:
    """One parsed recipe file (module docstring)."""

    name: str
    path: Path
    description: str
    env_id: str
    algo: str
    seed: int
    hyperparams: dict
    n_timesteps: int
    scenario: str | None = None
    overrides: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def resolved_hyperparams(self, allow_imports: bool = False):
        """The recipe's ``hyperparams`` as :class:`~distllm_env.agents.hyperparams.Hyperparams`.

        Raises:
            ScenarioError: a bad hyper-parameter (path ``FILE:hyperparams.<key>``)."""
        from ..hyperparams import hyperparams_from_entry

        return hyperparams_from_entry(self.algo, self.env_id, self.hyperparams, key="hyperparams", source=self.path.name,
                                      prefix=f"{self.path.name}:hyperparams", allow_imports=allow_imports)

    def sidecar_field(self) -> dict:
        """What a model's sidecar records about the recipe it was trained from."""
        return {"name": self.name, "file": self.path.name, "sha256": self.sha256}


def load_recipe(path: str | Path, name: str | None = None) -> Recipe:
    """Parse and check the recipe file ``path`` (``name``: default the file's stem).

    Raises:
        ScenarioError: (path ``FILE.<key>``) a missing or unknown key, a seed outside [0, 10 000),
            an unknown algorithm or env id, or ``hyperparams`` without ``n_timesteps`` ≥ 1."""
    from ..envs import check_env_id
    from ..hyperparams import ALGOS
    from ..wrappers import EVAL_SEED_BASE

    path = Path(path)
    if not path.is_file():
        raise ScenarioError("recipe", f"recipe file {str(path)!r} does not exist")
    data = load_yaml_file(path)
    where = path.name
    if not isinstance(data, dict):
        raise ScenarioError(where, f"expected a mapping with keys {list(REQUIRED_KEYS)}, got {type(data).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ScenarioError(f"{where}.{missing[0]}", "missing key (a recipe needs " + ", ".join(REQUIRED_KEYS) + ")")
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ScenarioError(f"{where}.{unknown[0]}", f"unknown key; expected {list(REQUIRED_KEYS + OPTIONAL_KEYS)} "
                                                     "(env kwargs, wrappers and timesteps go inside 'hyperparams')")
    desc = data["description"]
    if not isinstance(desc, str) or not desc.strip():
        raise ScenarioError(f"{where}.description", "expected a non-empty string")
    env_id = check_env_id(str(data["env_id"]), f"{where}.env_id")
    algo = data["algo"]
    if algo not in ALGOS:
        raise ScenarioError(f"{where}.algo", f"expected one of {sorted(ALGOS)}, got {algo!r}")
    seed = data["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < EVAL_SEED_BASE:
        raise ScenarioError(f"{where}.seed", f"expected an integer training seed in [0, {EVAL_SEED_BASE}), got {seed!r}")
    scenario = data.get("scenario")
    if scenario is not None and not isinstance(scenario, str):
        raise ScenarioError(f"{where}.scenario", f"expected a preset name or a YAML path, got {scenario!r}")
    if scenario is not None and not Path(scenario).is_absolute() and (path.parent / scenario).is_file():
        scenario = str(path.parent / scenario)      # a scenario file next to the recipe
    overrides = data.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ScenarioError(f"{where}.overrides", f"expected a list of 'PATH=VALUE' strings, got {overrides!r}")
    hp = data["hyperparams"]
    if not isinstance(hp, dict):
        raise ScenarioError(f"{where}.hyperparams", f"expected a mapping (one RL-Zoo entry), got {hp!r}")
    n_ts = hp.get("n_timesteps")
    try:
        n_ts = int(float(n_ts))
    except (TypeError, ValueError):
        raise ScenarioError(f"{where}.hyperparams.n_timesteps", f"expected a number of steps ≥ 1, got {n_ts!r}") from None
    if n_ts < 1:
        raise ScenarioError(f"{where}.hyperparams.n_timesteps", f"expected a number of steps ≥ 1, got {n_ts}")
    name = name or path.stem
    if not _NAME.match(name):
        raise ScenarioError(where, f"a zoo name is letters, digits, '_', '-' and '.', got {name!r}")
    return Recipe(name, path, desc.strip(), env_id, algo, seed, dict(hp), n_ts, scenario, list(overrides))


def _files(zoo_dir: "str | Path | Sequence[str | Path] | None", suffix: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for d in zoo_dirs(zoo_dir):
        if d.is_dir():
            for f in sorted(d.glob(f"*{suffix}")):
                if f.is_file() and _NAME.match(f.stem):
                    out.setdefault(f.stem, f)
    return out


def recipes(zoo_dir: "str | Path | Sequence[str | Path] | None" = None) -> dict[str, Path]:
    """``{name: recipe file}`` over :func:`zoo_dirs` (the first directory holding a name wins)."""
    return _files(zoo_dir, ".yml")


def models(zoo_dir: "str | Path | Sequence[str | Path] | None" = None) -> dict[str, Path]:
    """``{name: model .zip}`` over :func:`zoo_dirs` (only models with a sidecar ``NAME.json``)."""
    return {n: p for n, p in _files(zoo_dir, ".zip").items() if p.with_suffix(".json").is_file()}


def names(zoo_dir: "str | Path | Sequence[str | Path] | None" = None) -> list[str]:
    """Every zoo name in search order: the names of the first directory of :func:`zoo_dirs` (sorted),
    then the new names of the next one, and so on (a name's place is that of the first directory
    holding its recipe or model)."""
    recs, mods = recipes(zoo_dir), models(zoo_dir)
    rank = {d.resolve(): i for i, d in enumerate(zoo_dirs(zoo_dir))}

    def first_dir(name: str) -> int:
        return min(rank.get(p.parent.resolve(), len(rank)) for p in (recs.get(name), mods.get(name)) if p is not None)

    return sorted(set(recs) | set(mods), key=lambda n: (first_dir(n), n))


def _unknown(kind: str, name: str, known: Iterable[str], flag: str, zoo_dir: "str | Path | Sequence[str | Path] | None") -> ScenarioError:
    known = sorted(known)
    return ScenarioError(flag, f"unknown zoo {kind} {name!r}; expected one of {known if known else '(none: the zoo is empty)'}"
                               f" (zoo directories: {', '.join(str(d) for d in zoo_dirs(zoo_dir))})")


def find_recipe(spec: str | Path, zoo_dir: "str | Path | Sequence[str | Path] | None" = None, flag: str = "recipe") -> Recipe:
    """The recipe ``spec``: an existing ``.yml`` file, or a zoo name (``NAME``, ``zoo/NAME`` or ``zoo:NAME``).

    Raises:
        ScenarioError: (path ``flag``) an unknown name (the message lists the known ones), or a bad recipe."""
    p = Path(spec)
    if p.suffix in (".yml", ".yaml") and p.is_file():
        return load_recipe(p)
    name = str(spec)
    for prefix in ("zoo/", "zoo:"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    name = name.removesuffix(".yml")
    found = recipes(zoo_dir)
    if name not in found:
        raise _unknown("recipe", name, found, flag, zoo_dir)
    return load_recipe(found[name], name)


def model_path(name: str, zoo_dir: "str | Path | Sequence[str | Path] | None" = None, flag: str = "model") -> Path:
    """The shipped (or overriding) model ``NAME.zip``.

    Raises:
        ScenarioError: (path ``flag``: ``model`` in Python, ``--model`` in the CLI) a recipe without a
            trained model (the message says how to train it), or no zoo name at all (the message lists
            the known models)."""
    name = str(name).removeprefix(MODEL_PREFIX)
    found = models(zoo_dir)
    if name not in found:
        recs = recipes(zoo_dir)
        if name in recs:
            where = recs[name].parent
            if where.resolve() == ZOO_DIR.resolve():
                how = f"distllm-env train --zoo {name} --zoo-dir DIR, then use DIR as a zoo directory"
            else:
                how = f"distllm-env train --zoo {name} --zoo-dir {where}"
            raise ScenarioError(flag, f"recipe {name!r} has no trained model (train it with {how})")
        raise _unknown("model", name, found, flag, zoo_dir)
    return found[name]


def resolve_model(spec: str | Path, zoo_dir: "str | Path | Sequence[str | Path] | None" = None,
                  flag: str = "model") -> Path:
    """``zoo:NAME`` → :func:`model_path`; anything else → ``Path(spec)``."""
    if isinstance(spec, str) and spec.startswith(MODEL_PREFIX):
        return model_path(spec, zoo_dir, flag)
    return Path(spec)


def default_model_out(recipe: Recipe, zoo_dir: "str | Path | Sequence[str | Path] | None" = None) -> Path:
    """Where ``train --zoo NAME`` writes ``NAME.zip`` without ``--out``: into the first ``zoo_dir``
    when one is given (so the model is found there next time); else next to the recipe when that lies
    in a directory of :data:`ZOO_DIR_ENV`; else ``NAME.zip`` in the working directory (never into the
    installed package)."""
    fname = f"{recipe.name}.zip"
    if zoo_dir is not None:
        return zoo_dirs(zoo_dir)[0] / fname
    if recipe.path.parent.resolve() != ZOO_DIR.resolve() and \
            any(d.resolve() == recipe.path.parent.resolve() for d in zoo_dirs(None)[:-1]):
        return recipe.path.parent / fname
    return Path(fname)


def entries(zoo_dir: "str | Path | Sequence[str | Path] | None" = None) -> list[dict]:
    """One row per zoo name, in search order (:func:`names`): ``name``, ``env_id``, ``scenario``, ``algo``, ``timesteps``, ``seed``,
    ``description``, ``model`` (path or None), ``size_bytes`` (the model's .zip, or None) and ``recipe``
    (path or None).  The sidecar supplies what a model without a recipe lacks.

    Raises:
        ScenarioError: a bad recipe or sidecar."""
    import json

    recs, mods = recipes(zoo_dir), models(zoo_dir)
    rows = []
    for name in names(zoo_dir):
        rec = load_recipe(recs[name], name) if name in recs else None
        side: dict[str, Any] = {}
        if name in mods:
            try:
                side = json.loads(mods[name].with_suffix(".json").read_text())
            except json.JSONDecodeError as exc:
                raise ScenarioError(str(mods[name].with_suffix(".json")), f"not valid JSON: {exc}") from None
        rows.append({
            "name": name,
            "env_id": rec.env_id if rec else side.get("env_id"),
            "scenario": (rec.scenario if rec else None) or side.get("scenario_name") or "(the id's own)",
            "algo": rec.algo if rec else side.get("algo"),
            "timesteps": side.get("timesteps", rec.n_timesteps if rec else None),
            "seed": rec.seed if rec else side.get("seed"),
            "description": rec.description if rec else str(side.get("description", "")),
            "model": str(mods[name]) if name in mods else None,
            "size_bytes": mods[name].stat().st_size if name in mods else None,
            "recipe": str(recs[name]) if name in recs else None,
        })
    return rows


__all__ = ["MODEL_PREFIX", "Recipe", "ZOO_DIR", "ZOO_DIR_ENV", "default_model_out", "entries", "find_recipe", "load_recipe", "model_path",
           "models", "names", "recipes", "resolve_model", "zoo_dirs"]

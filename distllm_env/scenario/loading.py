"""Finding and reading scenarios: shipped presets, YAML files, mappings (docs/scenarios.md).

Files are read with :func:`distllm_env.yaml_safe.load_yaml_file` (inert data only: no tags, no
aliases, no duplicate keys, bounded size and depth, strict UTF-8).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

from .. import validation as v
from ..errors import ScenarioError
from ..yaml_safe import load_yaml_file
from .overrides import apply_overrides
from .parsing import Scenario, parse_scenario


def list_presets() -> list[str]:
    """Names of the shipped scenario presets."""
    root = resources.files("distllm_env.scenarios")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def preset_path(name: str):
    """The shipped preset's YAML file (an ``importlib.resources`` traversable)."""
    return resources.files("distllm_env.scenarios").joinpath(f"{name}.yaml")


def read_scenario_yaml(path: "str | os.PathLike", source: str | None = None) -> dict:
    """The raw mapping of a scenario YAML file.  Raises :class:`ScenarioError`."""
    src = source if source is not None else os.fspath(path)
    return v.mapping(load_yaml_file(path, src), src)


def load_scenario(spec: "str | os.PathLike | Scenario | Mapping", overrides: Sequence[str] = ()) -> Scenario:
    """Load a scenario from a preset name, a YAML path, a mapping or a :class:`Scenario`, applying
    ``--set``-style ``overrides``.

    Builds no instance; call :func:`distllm_env.instance.build_instance` (or ``distllm-env scenarios
    validate``) for the checks that need the drawn topology.

    Raises:
        ScenarioError: an unknown preset, a missing or unreadable file, or any malformed field."""
    overrides = tuple(overrides or ())
    if isinstance(spec, Scenario):
        return spec.with_overrides(overrides)
    if isinstance(spec, Mapping):
        raw = apply_overrides(dict(spec), overrides)
        return parse_scenario(raw, source="<dict>", overrides=overrides)
    text_spec = os.fspath(spec)
    path = Path(text_spec)
    if path.suffix in (".yaml", ".yml") or os.sep in text_spec or path.is_file():
        if not path.is_file():
            raise ScenarioError("scenario", f"no scenario file {v.short(text_spec)}")
        raw = read_scenario_yaml(path, text_spec)
        base_dir = str(path.resolve().parent)
        source = str(path)
    else:
        if text_spec not in list_presets():
            raise ScenarioError("scenario", f"unknown scenario preset {v.short(text_spec)}; presets: {list_presets()} "
                                            "(or give a path to a .yaml file)")
        raw = read_scenario_yaml(preset_path(text_spec), text_spec)
        base_dir = None
        source = text_spec
    raw = apply_overrides(raw, overrides)
    return parse_scenario(raw, source=source, base_dir=base_dir, overrides=overrides)


__all__ = ["list_presets", "load_scenario", "preset_path", "read_scenario_yaml"]

"""``--set PATH=VALUE`` overrides applied to a raw scenario mapping before validation.

VALUE is read as YAML data by :func:`distllm_env.yaml_safe.load_yaml_text` (so ``1e3`` and ``.5`` are
floats, ``{dist: uniform, low: 8, high: 16}`` is a mapping, aliases and tags are refused).
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

from .. import validation as v
from ..errors import ScenarioError
from ..yaml_safe import load_yaml_text


def _match_key(node: dict, parts: list[str], i: int) -> tuple[str, int]:
    """The longest ``parts[i..j]`` joined with dots that is an existing key (``MIG-1g.10gb``),
    else ``parts[i]``."""
    for j in range(len(parts) - 1, i, -1):
        candidate = ".".join(parts[i: j + 1])
        if candidate in node:
            return candidate, j
    return parts[i], i


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``PATH=VALUE`` into the dotted path's parts and the YAML-parsed value.

    Raises:
        ScenarioError: no ``=``, an empty path, or a VALUE that is not valid YAML data."""
    if not isinstance(text, str) or "=" not in text:
        raise ScenarioError("--set", f"expected PATH=VALUE, got {v.short(text)}")
    path, value = text.split("=", 1)
    path = path.strip()
    if not path:
        raise ScenarioError("--set", f"empty PATH in {v.short(text)}")
    parsed = load_yaml_text(value, f"--set {v.short(path, 40)}") if value.strip() else None
    return path.split("."), parsed


def apply_overrides(raw: Mapping, overrides: Sequence[str]) -> dict:
    """Apply ``PATH=VALUE`` overrides to a deep copy of ``raw``.  List items are addressed by index
    (``servers.3.gpu``); keys containing dots (``MIG-1g.10gb``) are matched against existing keys.
    Unknown keys are caught by validation like unknown YAML keys; a path through a scalar or past
    the end of a list is an error here.

    Raises:
        ScenarioError: naming the override's path."""
    out = copy.deepcopy(dict(raw))
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = out
        i, walked = 0, []
        while i < len(parts):
            key = parts[i]
            if isinstance(node, list):
                try:
                    idx = int(key)
                except ValueError:
                    raise ScenarioError(".".join(walked + [key]), f"--set: expected a list index, got {v.short(key)}") from None
                if not -len(node) <= idx < len(node):
                    raise ScenarioError(".".join(walked + [key]),
                                        f"--set: index {idx} out of range (the list has {len(node)} items)")
                walked.append(key)
                if i == len(parts) - 1:
                    node[idx] = value
                else:
                    node = node[idx]
                i += 1
                continue
            if not isinstance(node, dict):
                raise ScenarioError(".".join(walked), f"--set: cannot set {v.short('.'.join(parts[i:]))} inside a "
                                                      f"{type(node).__name__} value")
            key, j = _match_key(node, parts, i)
            walked.append(key)
            if j == len(parts) - 1:
                node[key] = value
                break
            if key not in node or node[key] is None:
                node[key] = {}
            node = node[key]
            i = j + 1
    return out


__all__ = ["apply_overrides", "parse_override"]

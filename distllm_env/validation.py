"""Small typed readers for YAML mappings that raise :class:`ScenarioError` naming the field path.

Every reader takes the mapping, the key and the mapping's own dotted path, so messages read
``workload.output_tokens: expected an integer ≥ 1, got -3``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from .errors import ScenarioError

MISSING = object()


def join(path: str, key: "str | int") -> str:
    return f"{path}.{key}" if path else str(key)


def mapping(value: Any, path: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ScenarioError(path, f"expected a mapping, got {type(value).__name__} {value!r}")
    for k in value:
        if not isinstance(k, str):
            raise ScenarioError(path, f"keys must be strings, got {k!r}")
    return dict(value)


def check_keys(d: Mapping, path: str, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
    allowed = list(allowed)
    for k in d:
        if k not in allowed:
            raise ScenarioError(join(path, k), f"unknown key; expected one of {allowed}")
    for k in required:
        if k not in d:
            raise ScenarioError(join(path, k), "required key is missing")


def _get(d: Mapping, key: str, path: str, default: Any):
    if key in d and d[key] is not None:
        return d[key]
    if default is MISSING:
        raise ScenarioError(join(path, key), "required key is missing")
    return default


def integer(d: Mapping, key: str, path: str, default: Any = MISSING, minimum: int | None = None,
            maximum: int | None = None) -> int:
    v = _get(d, key, path, default)
    return check_int(v, join(path, key), minimum, maximum)


def check_int(v: Any, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer() and math.isfinite(v):
            v = int(v)
        else:
            raise ScenarioError(path, f"expected an integer{_range_text(minimum, maximum)}, got {v!r}")
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise ScenarioError(path, f"expected an integer{_range_text(minimum, maximum)}, got {v}")
    return int(v)


def number(d: Mapping, key: str, path: str, default: Any = MISSING, minimum: float | None = None,
           exclusive_minimum: bool = False, maximum: float | None = None) -> float:
    v = _get(d, key, path, default)
    return check_number(v, join(path, key), minimum, exclusive_minimum, maximum)


def check_number(v: Any, path: str, minimum: float | None = None, exclusive_minimum: bool = False,
                 maximum: float | None = None) -> float:
    rng = _range_text(minimum, maximum, exclusive_minimum)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ScenarioError(path, f"expected a number{rng}, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ScenarioError(path, f"expected a finite number{rng}, got {v}")
    if minimum is not None and (v < minimum or (exclusive_minimum and v == minimum)):
        raise ScenarioError(path, f"expected a number{rng}, got {v:g}")
    if maximum is not None and v > maximum:
        raise ScenarioError(path, f"expected a number{rng}, got {v:g}")
    return v


def string(d: Mapping, key: str, path: str, default: Any = MISSING, choices: Iterable[str] | None = None) -> str:
    v = _get(d, key, path, default)
    if not isinstance(v, str):
        raise ScenarioError(join(path, key), f"expected a string, got {v!r}")
    if choices is not None:
        choices = list(choices)
        if v not in choices:
            raise ScenarioError(join(path, key), f"expected one of {choices}, got {v!r}")
    return v


def boolean(d: Mapping, key: str, path: str, default: Any = MISSING) -> bool:
    v = _get(d, key, path, default)
    if not isinstance(v, bool):
        raise ScenarioError(join(path, key), f"expected true or false, got {v!r}")
    return v


def sequence(v: Any, path: str) -> list:
    if not isinstance(v, (list, tuple)):
        raise ScenarioError(path, f"expected a list, got {type(v).__name__} {v!r}")
    return list(v)


def _range_text(minimum, maximum, exclusive_minimum: bool = False) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" {'>' if exclusive_minimum else '≥'} {minimum}"
    if maximum is not None:
        return f" ≤ {maximum}"
    return ""

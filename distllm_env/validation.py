"""Small typed readers for YAML mappings that raise :class:`ScenarioError` naming the field path.

Every reader takes the mapping, the key and the mapping's own dotted path, so messages read
``workload.output_tokens: expected an integer ≥ 1, got -3``.  Every user value echoed into a message
goes through :func:`short` (a bounded repr, at most ``MAX_ECHO_CHARS`` characters).  Number fields
also accept a string holding a YAML 1.2 float literal (``"1e3"``), and :func:`scaled` checks that a
value stays finite after unit scaling (``memory_gb`` × 10^9).
"""

from __future__ import annotations

import math
import reprlib
from typing import Any, Iterable, Mapping

from .errors import ScenarioError
from .limits import MAX_ECHO_CHARS
from .yaml_safe import parse_float_literal

MISSING = object()

_REPR = reprlib.Repr()
_REPR.maxstring = MAX_ECHO_CHARS
_REPR.maxother = MAX_ECHO_CHARS
_REPR.maxlong = 40
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def short(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """A repr of ``value`` cut to at most ``limit`` characters (ending in "…" when cut); its cost is
    bounded whatever the size of ``value``."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a user object whose repr fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def join(path: str, key: "str | int") -> str:
    return f"{path}.{key}" if path else str(key)


def mapping(value: Any, path: str) -> dict:
    """``value`` as a ``dict`` (``None`` → ``{}``).

    Raises:
        ScenarioError: (path ``path``) ``value`` is not a mapping, or has a non-string key."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ScenarioError(path, f"expected a mapping, got {type(value).__name__} {short(value)}")
    for k in value:
        if not isinstance(k, str):
            raise ScenarioError(path, f"keys must be strings, got {short(k)}")
    return dict(value)


def check_keys(d: Mapping, path: str, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
    """Check that ``d`` has only ``allowed`` keys and every ``required`` one.

    Raises:
        ScenarioError: an unknown key (path ``path.key``, listing the allowed ones) or a missing
            required key."""
    allowed = list(allowed)
    for k in d:
        if k not in allowed:
            raise ScenarioError(join(path, k if len(k) <= 40 else k[:39] + "…"), f"unknown key; expected one of {allowed}")
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
    """``v`` as an int in [minimum, maximum]; a float with an integral value is accepted (``1e3``).
    Huge Python ints are refused by comparison, never converted.  Raises :class:`ScenarioError`."""
    if isinstance(v, str):
        f = parse_float_literal(v)
        v = f if f is not None else v
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            v = int(v)
        else:
            raise ScenarioError(path, f"expected an integer{_range_text(minimum, maximum)}, got {short(v)}")
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise ScenarioError(path, f"expected an integer{_range_text(minimum, maximum)}, got {short(v)}")
    return int(v)


def number(d: Mapping, key: str, path: str, default: Any = MISSING, minimum: float | None = None,
           exclusive_minimum: bool = False, maximum: float | None = None) -> float:
    v = _get(d, key, path, default)
    return check_number(v, join(path, key), minimum, exclusive_minimum, maximum)


def check_number(v: Any, path: str, minimum: float | None = None, exclusive_minimum: bool = False,
                 maximum: float | None = None) -> float:
    """``v`` as a finite float in range; a string holding a YAML 1.2 float literal (``"1e3"``) is
    accepted.  Raises :class:`ScenarioError`."""
    rng = _range_text(minimum, maximum, exclusive_minimum)
    if isinstance(v, str):
        f = parse_float_literal(v)
        v = f if f is not None else v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ScenarioError(path, f"expected a number{rng}, got {short(v)}")
    try:
        v = float(v)
    except OverflowError:
        raise ScenarioError(path, f"expected a finite number{rng}, got {short(v)}") from None
    if not math.isfinite(v):
        raise ScenarioError(path, f"expected a finite number{rng}, got {v}")
    if minimum is not None and (v < minimum or (exclusive_minimum and v == minimum)):
        raise ScenarioError(path, f"expected a number{rng}, got {v:g}")
    if maximum is not None and v > maximum:
        raise ScenarioError(path, f"expected a number{rng}, got {v:g}")
    return v


def scaled(value: float, scale: float, path: str, integer: bool = False) -> "float | int":
    """``value × scale`` (a unit conversion), checked finite (and, with ``integer``, within int64).
    Raises :class:`ScenarioError` naming ``path``."""
    out = value * scale
    if not math.isfinite(out) or (integer and abs(out) >= 2.0**63):
        raise ScenarioError(path, f"{value:g} is too large once converted ({value:g} × {scale:g} is not a finite "
                                  f"{'int64' if integer else 'float'})")
    return int(out) if integer else out


def string(d: Mapping, key: str, path: str, default: Any = MISSING, choices: Iterable[str] | None = None) -> str:
    """``d[key]`` (or ``default``) as a string, one of ``choices`` if given.

    Raises:
        ScenarioError: (path ``path.key``) a required key is missing, the value is not a string, or
            not one of ``choices``."""
    v = _get(d, key, path, default)
    if not isinstance(v, str):
        raise ScenarioError(join(path, key), f"expected a string, got {short(v)}")
    if choices is not None:
        choices = list(choices)
        if v not in choices:
            raise ScenarioError(join(path, key), f"expected one of {choices}, got {short(v)}")
    return v


def check_string(v: Any, path: str) -> str:
    """``v`` if it is a string.  Raises :class:`ScenarioError`."""
    if not isinstance(v, str):
        raise ScenarioError(path, f"expected a string, got {short(v)}")
    return v


def boolean(d: Mapping, key: str, path: str, default: Any = MISSING) -> bool:
    """``d[key]`` (or ``default``) as a bool.

    Raises:
        ScenarioError: (path ``path.key``) a required key is missing or the value is not ``true``/``false``."""
    v = _get(d, key, path, default)
    if not isinstance(v, bool):
        raise ScenarioError(join(path, key), f"expected true or false, got {short(v)}")
    return v


def sequence(v: Any, path: str, max_items: int | None = None) -> list:
    """``v`` as a list (of at most ``max_items`` items).  Raises :class:`ScenarioError`."""
    if not isinstance(v, (list, tuple)):
        raise ScenarioError(path, f"expected a list, got {type(v).__name__} {short(v)}")
    if max_items is not None and len(v) > max_items:
        raise ScenarioError(path, f"expected at most {max_items} items, got {len(v)}")
    return list(v)


def _range_text(minimum, maximum, exclusive_minimum: bool = False) -> str:
    def f(x):
        return f"{x:g}" if isinstance(x, float) else str(x)

    if minimum is not None and maximum is not None:
        return f" {'>' if exclusive_minimum else '≥'} {f(minimum)} and ≤ {f(maximum)}"
    if minimum is not None:
        return f" {'>' if exclusive_minimum else '≥'} {f(minimum)}"
    if maximum is not None:
        return f" ≤ {f(maximum)}"
    return ""

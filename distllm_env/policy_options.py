"""Validation of policy options: one vocabulary for every policy (docs/contracts.md §3, §5).

A policy's options come from the scenario's ``policy_defaults.options.<name>`` mapping (or from the
Python API as keyword arguments).  Every bad option raises :class:`ScenarioError` with the path
``policy_defaults.options.<name>.<option>`` and what was expected, so the CLI prints one line and
exits with code 2.  Unknown option names are errors too (:func:`check_option_names`).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Mapping

import numpy as np

from .errors import ScenarioError
from .limits import MAX_OPTION_INT

#: longest echo of a bad value in a message (characters)
MAX_ECHO_CHARS = 80


def option_path(policy: str, option: str | None = None) -> str:
    """``policy_defaults.options.<policy>[.<option>]``."""
    return f"policy_defaults.options.{policy}" + (f".{option}" if option else "")


def _echo(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS - 1] + "…"


def option_error(policy: str, option: str, expected: str, got: Any) -> ScenarioError:
    """The :class:`ScenarioError` for a bad value of ``option`` of ``policy``."""
    return ScenarioError(option_path(policy, option), f"expected {expected}, got {_echo(got)}")


def check_number(policy: str, option: str, value: Any, *, minimum: float | None = None,
                 exclusive: bool = False) -> float:
    """A finite real number (≥ ``minimum``, or > it when ``exclusive``); raises :class:`ScenarioError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise option_error(policy, option, "a finite number", value)
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise option_error(policy, option, f"a number {'>' if exclusive else '≥'} {minimum}", value)
    return float(value)


def check_int(policy: str, option: str, value: Any, minimum: int, maximum: int = MAX_OPTION_INT) -> int:
    """An integer in ``minimum``..``maximum`` (bools refused; the default maximum is
    ``limits.MAX_OPTION_INT``); raises :class:`ScenarioError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value <= maximum:
        raise option_error(policy, option, f"an integer ≥ {minimum} and ≤ {maximum}", value)
    return int(value)


def check_bool(policy: str, option: str, value: Any) -> bool:
    """``true`` or ``false``; raises :class:`ScenarioError`."""
    if not isinstance(value, (bool, np.bool_)):
        raise option_error(policy, option, "true or false", value)
    return bool(value)


def check_option_names(factory: Any, policy: str, options: Mapping[str, Any]) -> None:
    """Refuse option names that ``factory`` (a policy class) does not accept: raises
    :class:`ScenarioError` at ``policy_defaults.options.<policy>.<option>`` naming the accepted ones.
    A factory taking ``**kwargs`` (or without an inspectable signature) accepts every name."""
    if not options:
        return
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = sorted(p.name for p in params
                      if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
    for key in options:
        if key not in accepted:
            raise ScenarioError(option_path(policy, str(key)),
                                f"unknown option of policy {policy!r}; expected one of {accepted or 'none'}")


__all__ = ["MAX_ECHO_CHARS", "check_bool", "check_int", "check_number", "check_option_names", "option_error",
           "option_path"]

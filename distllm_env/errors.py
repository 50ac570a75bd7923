"""Exception types shared by every part of distllm-env (docs/contracts.md §7).

Every error a user can cause by bad input derives from :class:`DistLLMError`, so callers (the CLI,
the environments, a user's own scripts) can catch one type.  Messages always name the offending
field or object and what was expected.
"""

from __future__ import annotations

from typing import Any


class DistLLMError(Exception):
    """Base class of every distllm-env error."""

    def __reduce__(self):
        # picklable whatever a subclass's __init__ takes: parallel workers send errors back
        # (distllm_env.parallel); plain pickle would call e.g. ScenarioError(message) and fail
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


def _rebuild_error(cls: type, args: tuple, state: dict) -> DistLLMError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class ScenarioError(DistLLMError, ValueError):
    """A scenario (YAML, override or Python object) is malformed.

    ``path`` is the dotted field path (``workload.output_tokens``, ``servers.3.gpu``) and the message
    says what was expected.
    """

    def __init__(self, path: str, message: str):
        self.path = path
        self.detail = message
        super().__init__(f"{path}: {message}" if path else message)


class PlacementError(DistLLMError, ValueError):
    """A block placement is invalid: uncovered blocks, a range outside the model, memory overflow.

    ``uncovered`` lists the uncovered block ranges as inclusive ``(first, last)`` pairs (0-based).
    """

    def __init__(self, message: str, uncovered: tuple[tuple[int, int], ...] = ()):
        self.uncovered = tuple(uncovered)
        super().__init__(message)


class NoFeasibleChain(DistLLMError):
    """No Lemma-1-feasible server chain exists (or none satisfies the router's constraints)."""


class RouteError(DistLLMError, ValueError):
    """A routing policy returned a route that is not a feasible chain under the placement."""


class SolverTimeout(DistLLMError):
    """A solver hit its time limit.  ``incumbent`` holds the best solution found and ``gap`` its
    relative optimality gap (``None`` if no incumbent was found)."""

    def __init__(self, message: str, incumbent: Any = None, gap: float | None = None):
        self.incumbent = incumbent
        self.gap = gap
        super().__init__(message)


class PolicyLoadError(DistLLMError, ValueError):
    """A policy name or ``module:Class`` import path could not be resolved."""

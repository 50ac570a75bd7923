"""Shared pieces of the MILP family (:mod:`.milp_bprr`, :mod:`.milp_routing`, the model builders):
argument checks, size caps, the wall-clock deadline, the gap convention and the reduction of a
problem to the servers some client can reach.

Errors for bad arguments and options are :class:`~distllm_env.errors.ScenarioError` whose path names
the field: ``policy_defaults.options.milp.<option>`` / ``policy_defaults.options.rr-ilp.<option>``
for policy options, ``problem.<field>`` or the argument's name for the Python API
(docs/contracts.md §3, §5).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from distllm_env.errors import ScenarioError
from distllm_env.offline import OfflineProblem
from distllm_env.policy_options import option_error  # noqa: F401 - the one home of option errors, re-exported

INF = float("inf")

#: Largest number of concurrent requests |R| the BPRR MILP accepts with the ``arcflow`` formulation
#: (one integer flow per client: the model's size does not grow with |R|, but the warm start, the
#: local search and the decoded routes are O(|R|)).
MAX_REQUESTS = 2000
#: Largest |R| for the link formulations (``literal``, ``rlt``): they have one binary flow and four
#: auxiliaries per request and edge of the O(N²) routing graph, so memory and build time grow as
#: |R|·N² (40 requests on ``paper-gtsce`` already give a model HiGHS cannot solve in minutes).
MAX_LINK_REQUESTS = 200


class BuildTimeout(Exception):
    """Internal: a model builder passed its deadline (caught by :func:`.milp_bprr.solve_bprr`)."""


@dataclass(frozen=True)
class Deadline:
    """An absolute ``time.perf_counter()`` instant (``at=None``: no limit)."""

    at: float | None = None

    @classmethod
    def after(cls, seconds: float | None) -> "Deadline":
        return cls(None if seconds is None else time.perf_counter() + float(seconds))

    def left_s(self) -> float | None:
        """Seconds left (may be negative), None without a limit."""
        return None if self.at is None else self.at - time.perf_counter()

    def passed(self) -> bool:
        return self.at is not None and time.perf_counter() >= self.at

    def check(self, what: str) -> None:
        """Raise :class:`BuildTimeout` naming ``what`` once the deadline has passed."""
        if self.passed():
            raise BuildTimeout(what)


def rel_gap(obj: float, bound: float) -> float:
    """HiGHS's convention: (objective − bound)/|objective| (0 when both are equal, inf without an
    objective)."""
    if not math.isfinite(obj):
        return INF
    if obj == bound:
        return 0.0
    return max(obj - bound, 0.0) / max(abs(obj), 1e-12)


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def max_requests(formulation: str) -> int:
    """The |R| cap of a formulation (:data:`MAX_REQUESTS` or :data:`MAX_LINK_REQUESTS`)."""
    return MAX_REQUESTS if formulation == "arcflow" else MAX_LINK_REQUESTS


def check_problem(problem: OfflineProblem, max_total: int | None = None) -> None:
    """Raise ScenarioError (path ``problem.<field>``) unless the problem has 1 … ``max_total``
    requests in all, none negative, and l_max ≥ 1; TypeError if it is not an OfflineProblem."""
    if not isinstance(problem, OfflineProblem):
        raise TypeError(f"problem must be an OfflineProblem, got {type(problem).__name__}")
    if np.any(problem.requests < 0):
        raise ScenarioError("problem.requests", f"expected ≥ 0 requests per client, got {problem.requests.tolist()}")
    if problem.total_requests <= 0:
        raise ScenarioError("problem.requests", "expected at least one request (got none)")
    if max_total is not None and problem.total_requests > max_total:
        raise ScenarioError("problem.requests", f"expected at most {max_total} requests in all, got "
                                                f"{problem.total_requests}")
    if problem.output_tokens <= 0:
        raise ScenarioError("problem.output_tokens", f"expected l_max ≥ 1, got {problem.output_tokens}")


def reachable_servers(problem: OfflineProblem) -> np.ndarray:
    """Boolean mask: servers with a finite t_cj for at least one client that has requests."""
    active = problem.requests > 0
    return np.isfinite(problem.token_cost_s[active]).any(axis=0)


def restrict(problem: OfflineProblem, keep: np.ndarray) -> OfflineProblem:
    """The same problem on the servers ``keep`` (a boolean mask), renumbered 0 … in order."""
    return OfflineProblem(num_blocks=problem.num_blocks, block_bytes=problem.block_bytes,
                          kv_block_bytes=problem.kv_block_bytes, memory_bytes=problem.memory_bytes[keep],
                          max_blocks=problem.max_blocks[keep], tau_s=problem.tau_s[keep],
                          token_cost_s=problem.token_cost_s[:, keep], requests=problem.requests,
                          output_tokens=problem.output_tokens)


__all__ = ["BuildTimeout", "Deadline", "MAX_LINK_REQUESTS", "MAX_REQUESTS", "check_problem", "is_int", "is_number",
           "max_requests", "option_error", "reachable_servers", "rel_gap", "restrict"]

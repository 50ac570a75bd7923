"""The per-request record and the small value types both engines share (docs/contracts.md §6).

Split out of :mod:`distllm_env.simulator` so that the analytic engine and the live engine
(:mod:`distllm_env.live`) share them without an import cycle; :mod:`distllm_env.simulator` re-exports
every name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .chains import Route, check_route
from .errors import DistLLMError, RouteError


#: Reasons a committed route is recorded as rejected by the simulator itself.
REJECT_UNREACHABLE = "unreachable"
REJECT_NON_FINITE = "non_finite_time"
REJECT_MEMORY = "insufficient_memory"
#: no replacement chain was found before the session timeout (churn, docs/model.md §12)
REJECT_FAILOVER_TIMEOUT = "failover_timeout"
#: the router found no chain (without churn at once; with churn after the open retries until the
#: session timeout, docs/contracts.md §6)
REJECT_NO_CHAIN = "no_feasible_chain"


@dataclass(frozen=True)
class RequestRecord:
    """One row of the per-request table (docs/contracts.md §6).  Times are NaN for rejected requests."""

    request_id: int
    client: int
    arrival_s: float
    start_s: float
    first_token_s: float
    completion_s: float
    wait_s: float
    prompt_tokens: int
    output_tokens: int
    hops: int
    route: Route | None
    status: str
    reason: str
    client_blocks: int = 0
    #: KV bytes reserved per processed block: prompt + DECLARED output (docs/contracts.md §6)
    kv_bytes_per_block: int = 0
    #: output length the client declared (``output_tokens`` is the true one); −1 if not given
    declared_tokens: int = -1
    #: the output was cut to fit the maximum sequence or the declared ``max_length`` (docs/contracts.md §3)
    truncated: bool = False
    #: times the session was moved off a failed or leaving server (churn, docs/model.md §12)
    failovers: int = 0
    #: seconds spent recovering: from each failure to the step that resumes the session (churn)
    recovery_s: float = 0.0

    @property
    def completed(self) -> bool:
        return self.status == "completed"


def rejected_record(request, reason: str, route: Route | None = None) -> RequestRecord:
    """The record of ``request`` (its TRUE lengths) rejected for ``reason``: times NaN, ``hops`` the
    length of ``route`` if one was tried (docs/contracts.md §6).  Shared by both engines."""
    nan = math.nan
    return RequestRecord(
        request_id=request.id, client=request.client, arrival_s=request.arrival_s, start_s=nan,
        first_token_s=nan, completion_s=nan, wait_s=nan, prompt_tokens=request.prompt_tokens,
        output_tokens=request.output_tokens, hops=len(route) if route is not None else 0, route=route,
        status="rejected", reason=reason, client_blocks=request.client_blocks,
        declared_tokens=int(request.declared_output_tokens), truncated=bool(request.truncated))


@dataclass(frozen=True)
class ClientPart:
    """A split decision for one request (split inference, arXiv 2410.10759): the client runs the
    first ``blocks`` blocks itself, taking ``prefill_s`` for the prompt and ``per_token_s`` per
    decoded token; the server chain then starts at block ``blocks`` (a dummy source covering them)."""

    blocks: int
    prefill_s: float = 0.0
    per_token_s: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """What routing a request on a route would give, before it is committed."""

    start_s: float | None
    first_token_s: float
    completion_s: float
    service_s: float
    hold_s: float
    hops: tuple[tuple[int, int], ...]   # (server, bytes)

    @property
    def feasible(self) -> bool:
        return self.start_s is not None


def check_record(r: RequestRecord) -> None:
    """Invariant of the per-request table: a completed record has finite times with
    arrival ≤ start ≤ first token ≤ completion.  Raises ``AssertionError`` otherwise (a simulator
    bug, never bad input)."""
    if r.completed:
        times = (r.arrival_s, r.start_s, r.first_token_s, r.completion_s)
        assert all(math.isfinite(x) for x in times), f"request {r.request_id} completed with times {times}"
        assert r.arrival_s <= r.start_s <= r.first_token_s <= r.completion_s, \
            f"request {r.request_id} completed with unordered times {times}"


__all__ = ["ClientPart", "Outcome", "REJECT_FAILOVER_TIMEOUT", "REJECT_MEMORY", "REJECT_NO_CHAIN", "REJECT_NON_FINITE", "REJECT_UNREACHABLE", "RequestRecord",
           "check_record"]


def check_deferral(current: "object | None", request: "object", until_s: float, now_s: float) -> None:
    """Check a deferral (both engines' ``defer``): ``request`` must be the request being routed
    (``current``) and ``until_s`` a finite time ≥ ``now_s`` (s).  Raises :class:`DistLLMError` naming
    what is wrong."""
    check_current_request(current, request)
    if not (math.isfinite(until_s) and until_s >= now_s):
        raise DistLLMError(f"defer until {until_s!r}: expected a finite time ≥ now ({now_s} s)")


def check_current_request(current: "object | None", request: "object") -> None:
    """Raise :class:`DistLLMError` unless ``request`` is the request being routed (``current``), for
    both engines' ``commit`` / ``reject`` / ``defer``."""
    if current is None or getattr(request, "id", None) != getattr(current, "id", None):
        raise DistLLMError(f"request {getattr(request, 'id', request)} is not the request being routed "
                           f"({None if current is None else getattr(current, 'id', current)})")


def checked_commit(sim, request, route) -> "RequestRecord | None":
    """The checks both engines' ``commit`` make first: ``request`` is the request being routed
    (:class:`DistLLMError` otherwise), ``route`` is a :class:`~distllm_env.chains.Route`
    (:class:`~distllm_env.errors.RouteError` otherwise) that satisfies the placement
    (:func:`~distllm_env.chains.check_route`, Lemma 1).  Returns the ``rejected`` record (reason
    ``unreachable``) when a hop's server cannot be reached from the client, else ``None``."""
    sim._check_current(request)
    if not isinstance(route, Route):
        raise RouteError(f"routing policy returned {type(route).__name__}, expected a Route")
    check_route(sim.placement, route, request.client_blocks)
    if not sim.reachable(request.client, [h.server for h in route.hops]):
        return sim.reject(request, REJECT_UNREACHABLE, route=route)
    return None

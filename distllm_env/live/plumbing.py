"""Request-side plumbing of the live engine: defer, reject, client splits, fork, final records.

:class:`ControlMixin` holds the methods of :class:`~distllm_env.live.engine.LiveSimulation` that act on
the request being routed or on the run as a whole rather than on steps: ``defer`` (docs/envs.md "Defer
action"), ``reject``, ``apply_split``, ``fork`` (docs/architecture.md "Forking a simulation") and
``finished_records``.  Split out of live/engine.py (same code, no behaviour change).
"""

from __future__ import annotations

import copy
import heapq
from dataclasses import replace
from typing import Sequence

from ..chains import Route
from ..errors import DistLLMError
from ..records import ClientPart, RequestRecord, check_current_request, check_deferral, check_record, rejected_record
from ..workload import Request
from .event_kinds import ARRIVAL
from .sessions import DONE


def public_request(r: Request) -> Request:
    """The request as routers see it: ``output_tokens`` is the DECLARED length."""
    if r.output_tokens == r.declared_output_tokens:
        return r
    return replace(r, output_tokens=int(r.declared_output_tokens))


class ControlMixin:
    """Defer / reject / split / fork / final records of :class:`~distllm_env.live.engine.LiveSimulation`
    (a mixin: it relies on the engine's attributes and on ``_push``)."""

    def defer(self, request: Request, until_s: float) -> None:
        """Put back ``request`` (the request being routed) undecided: it arrives again at ``until_s``
        and is returned by :meth:`next_request` then, keeping its ``arrival_s`` (its waiting counts in
        its times).  The RequestRouting env's defer action (docs/envs.md "Defer action").  Raises
        :class:`DistLLMError` if ``request`` is not the request being routed or ``until_s`` is not a
        finite time ≥ now (:func:`~distllm_env.records.check_deferral`)."""
        check_deferral(self.current_request, request, until_s, self.now_s)
        self.current_request = None
        self._push(float(until_s), ARRIVAL, request.id, 0)

    def reject(self, request: Request, reason: str, route: Route | None = None) -> RequestRecord:
        """Record ``request`` rejected for ``reason`` (times NaN)."""
        self._check_current(request)
        r = self._true[request.id]
        rec = rejected_record(r, reason, route)
        self.records[r.id] = rec
        self.current_request = None
        return rec

    def _check_current(self, request: Request) -> None:
        check_current_request(self.current_request, request)

    def apply_split(self, part: ClientPart) -> Request:
        """As :meth:`Simulation.apply_split`."""
        req = self.current_request
        if req is None:
            raise DistLLMError("no request is being routed")
        if not 0 <= part.blocks < self.instance.num_blocks:
            raise DistLLMError(f"the client may run 0..{self.instance.num_blocks - 1} blocks (the server chain needs "
                               f"at least one), got {part.blocks}")
        if part.prefill_s < 0 or part.per_token_s < 0:
            raise DistLLMError(f"client times must be ≥ 0, got {part}")
        self._client_parts[req.id] = part
        self._true[req.id] = replace(self._true[req.id], client_blocks=int(part.blocks))
        req = replace(req, client_blocks=int(part.blocks))
        self.requests[req.id] = req
        self.current_request = req
        return req

    def fork(self, future: Sequence[Request] | None = None, also: Sequence = ()):
        """An independent copy that continues byte-identically (as
        :meth:`distllm_env.simulator.Simulation.fork`): sessions in flight, admission queues, books,
        churn state and its numpy Generators are copied, finished sessions and immutable parts shared.
        Policy objects the engine holds (churn: failover router, placement policy) are forked too.

        ``future`` replaces the requests not yet arrived (renumbered, arriving at or after now); the
        fork is then a hypothetical continuation and the request being routed runs with its DECLARED
        length (what routers see).  Sessions in flight keep their engine lengths.  Raises
        :class:`DistLLMError` for a bad ``future``.

        ``also``: objects copied in the same pass (the router and rng driving the run, so that a churn
        engine's failover router stays the same object as the fork's router); the result is then the
        tuple ``(fork, *copies)``."""
        from ..forking import engine_parts, fork_copy

        shared, shallow = engine_parts(
            self, ("_true", "requests", "records", "_client_parts", "_events", "_control", "_end_bounds",
                   "_solo_s", "completed_ids"), ("_tau", "_peak", "_rows", "churn", "_placed"))
        preset = {id(s): (s if s.state == DONE else copy.copy(s)) for s in self.sessions.values()}
        preset[id(self.sessions)] = {k: preset[id(s)] for k, s in self.sessions.items()}
        views = getattr(self, "_failover_views", None)     # churn: a cache of views, rebuilt on demand
        if views is not None:
            preset[id(views)] = {}
        new = fork_copy(self, shared, shallow, preset, also=also)
        if future is not None:
            (new[0] if also else new)._set_future(future)
        return new

    def _set_future(self, future: Sequence[Request]) -> None:
        from ..forking import future_ids, renumber_future

        first = future_ids([(e[2], e[0]) for e in self._events if e[1] == ARRIVAL],
                           lambda i: self._true[i].arrival_s, len(self._true))
        self._events = [e for e in self._events if not (e[1] == ARRIVAL and e[2] >= first)]
        heapq.heapify(self._events)
        reqs = renumber_future(future, first, self.now_s)
        cur = self.current_request
        if cur is not None:
            self._true[cur.id] = replace(self._true[cur.id], output_tokens=int(cur.declared_output_tokens))
        for lst in (self._true, self.requests, self.records):
            del lst[first:]
        self._true.extend(reqs)
        self.requests.extend(public_request(r) for r in reqs)
        self.records.extend([None] * len(reqs))
        for r in reqs:
            self._push(r.arrival_s, ARRIVAL, r.id, 0)

    def finished_records(self) -> list[RequestRecord]:
        """The per-request table once every request has ended.  Raises :class:`DistLLMError` if a
        request was never routed or is still running."""
        missing = [i for i, r in enumerate(self.records) if r is None or r.status == "pending"]
        if missing:
            raise DistLLMError(f"{len(missing)} requests were never routed or are still running (first: {missing[0]})")
        for r in self.records:
            check_record(r)  # type: ignore[arg-type]
        return list(self.records)  # type: ignore[arg-type]


__all__ = ["ControlMixin", "public_request"]

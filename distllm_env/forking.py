"""Forking a running simulation: the copy machinery behind ``Simulation.fork()`` and
``LiveSimulation.fork()`` (docs/architecture.md "Forking a simulation").

A fork is ``copy.deepcopy(sim, memo)`` with a memo pre-seeded so that

* the immutable parts — instance, placement, cache policy, capacities, the view's static arrays and
  chain DAGs, frozen requests / records / routes — are SHARED, never copied (``shared``);
* containers whose items are immutable (the event heap of tuples, the request and record lists) are
  copied one level deep only (``shallow``): a new list holding the same items.

Everything else (reservation books, sessions in flight, admission queues, numpy Generators with their
state, policy objects the simulation holds) is deep-copied, so the fork continues byte-identically
and nothing done to it reaches the original.  This module imports no engine (the engines import it).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .errors import DistLLMError


def fork_copy(obj: Any, shared: Iterable[Any] = (), shallow: Iterable[Any] = (),
              preset: dict[int, Any] | None = None, also: Sequence[Any] = ()) -> Any:
    """``copy.deepcopy(obj)`` sharing every object of ``shared`` (by identity), copying each container
    of ``shallow`` one level deep (``copy.copy``), and using ``preset`` (``{id(original): copy}``) as
    given.  Returns the copy, or ``(copy, *copies of also)`` when ``also`` is given: the objects of
    ``also`` (e.g. the router and rng driving the run) are copied in the same pass, so references
    between them and ``obj`` stay references between the copies."""
    memo: dict[int, Any] = dict(preset or {})
    for s in shared:
        if s is not None:
            memo[id(s)] = s
    for c in shallow:
        if c is not None and id(c) not in memo:
            memo[id(c)] = copy.copy(c)
    if also:
        return copy.deepcopy((obj, *also), memo)
    return copy.deepcopy(obj, memo)


def view_parts(view: Any) -> tuple[list, list]:
    """``(shared, shallow)`` for a :class:`~distllm_env.view.ClusterView`: its numpy arrays (the
    instance's static tables) and chain DAGs are shared; its DAG cache dict is copied one level."""
    shared = [v for v in vars(view).values() if isinstance(v, np.ndarray)]
    shared.append(getattr(view, "instance", None))
    dags = getattr(view, "_dags", None)
    if dags:
        shared.extend(dags.values())
    return shared, [dags]


def engine_parts(sim: Any, shallow_names: Sequence[str], shared_names: Sequence[str] = ()) -> tuple[list, list]:
    """``(shared, shallow)`` of an engine: its instance, placement, cache policy, capacities, the
    request being routed and the named attributes, plus its view's parts (:func:`view_parts`)."""
    shared = [getattr(sim, n, None) for n in ("instance", "placement_result", "placement", "cache_policy",
                                               "capacity_bytes", "current_request", *shared_names)]
    shallow = [getattr(sim, n, None) for n in shallow_names]
    v_shared, v_shallow = view_parts(sim.view)
    return shared + v_shared, shallow + v_shallow


def future_ids(queued: Iterable[tuple[int, float]], arrival_s: Callable[[int], float], num_requests: int) -> int:
    """The first request id that has not arrived yet, from the queued arrival events ``(id, time_s)``.
    Requests arrive in id order, so the ids not yet arrived are the longest run ``k..n−1`` of queued
    events at their own arrival time; any other queued arrival is a deferred request (``defer``), which
    has arrived and stays (a request deferred by 0 s at its own arrival instant is taken as not arrived)."""
    original = {i for i, t in queued if t == arrival_s(i)}
    first = num_requests
    while first - 1 in original:
        first -= 1
    return first


def renumber_future(future: Sequence[Any], first_id: int, now_s: float) -> list:
    """``future`` (requests) renumbered ``first_id, first_id + 1, …`` in order.  Raises
    :class:`DistLLMError` if an arrival is before ``now_s`` or arrivals are not in order."""
    from dataclasses import replace

    out, last = [], now_s
    for k, r in enumerate(future):
        if not r.arrival_s >= last:
            raise DistLLMError(f"future request {k} arrives at {r.arrival_s} s, before {last} s (now or the "
                               "previous future request)")
        last = r.arrival_s
        out.append(replace(r, id=first_id + k))
    return out


__all__ = ["engine_parts", "fork_copy", "future_ids", "renumber_future", "view_parts"]

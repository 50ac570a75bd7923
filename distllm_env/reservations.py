"""KV-cache reservation books: the two accountings of docs/contracts.md §8.

Both books keep, per server, the KV bytes reserved by sessions and answer the same questions: the
earliest start at which every hop of a chain has room, whether a start time fits, and the
"free-bytes" profile from which routing policies read waiting times t^W.

* :class:`CalendarBook` (``calendar``): a reservation calendar.  A session occupies its bytes over
  ``[start, completion)``; a request's start is the earliest t ≥ arrival at which every hop has room
  over the whole interval, given all committed reservations.  A later request may fit around an
  earlier waiting one.  Memory is never over-committed at any instant.
* :class:`PublishedBook` (``published``): the published simulator's accounting (docs/model.md §5).  A
  routed request counts its bytes as occupied from the routing decision until completion (waiting
  included); its wait on each hop is read from the sorted completion times of the requests active
  at decision time, and the chain's wait is the maximum over the hops.

Both implement the :class:`ReservationBook` protocol.  Cost: the calendar keeps each server's step
function in chunks (:mod:`distllm_env.step_function`), so a query costs O(log n) to locate plus the
segments it must inspect, and whole chunks that cannot matter are skipped; waiting times are read
back from the last segment and cached until the server's calendar changes.  Under overload (a
backlog that grows with the number of requests) the cost per request therefore does not grow with
the backlog.  PETALS back-off instants are found in closed form (:func:`first_retry_at_or_after_s`).
"""

from __future__ import annotations

import math
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from .backoff import (backoff_index, backoff_instant_s, backoff_instants_s, backoff_round_s,  # noqa: F401
                      first_retry_at_or_after_s)
from .release_list import ReleaseList
from .step_function import StepFunction

Hops = Sequence[tuple[int, int]]   # (server, bytes needed)
_NEG_INF = float("-inf")


@runtime_checkable
class ReservationBook(Protocol):
    """What the simulator and :class:`~distllm_env.view.ClusterView` ask of a KV reservation book
    (docs/contracts.md §8).  Units: times in seconds of simulated time (absolute, the simulation's
    clock), memory in bytes; ``hops`` are ``(server index, bytes needed)`` pairs; ``duration`` is the
    hold time in seconds.  Queries are only made at times ≥ the last :meth:`advance`."""

    mode: str
    capacity: list[int]

    def advance(self, now: float) -> None:
        """Move the clock to ``now`` (non-decreasing): forget what ended before it."""

    def free_bytes(self, server: int, t: float) -> int:
        """Bytes free on ``server`` at time ``t`` (may be negative only if over-committed — never)."""

    def used_bytes(self, server: int, t: float) -> int:
        """Bytes reserved on ``server`` at time ``t``."""

    def fits(self, t: float, hops: Hops, duration: float) -> bool:
        """Whether a session needing ``hops`` for ``duration`` seconds can start at ``t``."""

    def earliest_start(self, now: float, hops: Hops, duration: float) -> float | None:
        """Earliest start ≥ ``now`` at which the session fits; ``None`` if it never can."""

    def earliest_starts(self, now: float, hop_sets, durations) -> list[float | None]:
        """:meth:`earliest_start` for several candidate chains."""

    def commit(self, decided_at: float, start: float, end: float, hops: Hops) -> None:
        """Reserve ``hops`` over ``[start, end)`` (decided at ``decided_at``).  The caller checked
        feasibility; times must be finite."""

    def stays_free_bytes(self, server: int, now: float) -> int:
        """Bytes that stay free on ``server`` at every instant from ``now`` on."""

    def wait_s(self, server: int, now: float, need) -> np.ndarray:
        """Seconds from ``now`` until ``need`` bytes are (and stay) free on ``server``; ``inf`` where
        that never happens.  Vectorised over ``need`` (bytes); equal to
        ``wait_for(self.free_profile(server, now), need)``."""

    def free_profile(self, server: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        """``(times_s, free_bytes)``: from ``times_s[k]`` on, at least ``free_bytes[k]`` stay free."""


class CalendarBook:
    """Per-server step functions of reserved bytes (:class:`~distllm_env.step_function.StepFunction`):
    a session occupies its bytes over ``[start, completion)``.  Every query costs O(log n) to locate
    plus the segments it must look at; whole chunks of segments that cannot matter are skipped."""

    mode = "calendar"

    def __init__(self, capacity_bytes: Sequence[int]):
        self.capacity = [int(c) for c in capacity_bytes]
        self.steps = [StepFunction() for _ in self.capacity]

    def advance(self, now: float) -> None:
        """Forget segments that ended before ``now`` (all later queries are at t ≥ now)."""
        for st in self.steps:
            st.prune(now)

    def used_bytes(self, server: int, t: float) -> int:
        return self.steps[server].level(t)

    def free_bytes(self, server: int, t: float) -> int:
        return self.capacity[server] - self.used_bytes(server, t)

    def fits(self, t: float, hops: Hops, duration: float) -> bool:
        return all(self.steps[j].last_violation_end(self.capacity[j] - need, t, t + duration) is None
                   for j, need in hops)

    def earliest_start(self, now: float, hops: Hops, duration: float) -> float | None:
        """Earliest t ≥ now with room on every hop over [t, t + duration); ``None`` if a hop needs
        more than its whole capacity (the request can never fit)."""
        if any(need > self.capacity[j] for j, need in hops):
            return None
        t = now
        while True:
            moved = False
            for j, need in hops:
                t_j = self.steps[j].earliest_clear(self.capacity[j] - need, t, duration)
                if t_j != t:
                    t, moved = t_j, True
            if not moved:
                return t

    def earliest_starts(self, now: float, hop_sets, durations) -> list[float | None]:
        """:meth:`earliest_start` for several candidate chains."""
        return [self.earliest_start(now, hops, d) for hops, d in zip(hop_sets, durations)]

    def commit(self, decided_at: float, start: float, end: float, hops: Hops) -> None:
        """Reserve each hop's bytes over ``[start, end)``.  Raises ``ValueError`` for a non-finite or
        empty interval (the simulator refuses such routes before committing)."""
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"reservation times must be finite, got [{start}, {end})")
        if end <= start:
            return   # an empty interval reserves nothing
        for j, need in hops:
            self.steps[j].add(start, end, need)

    def stays_free_bytes(self, server: int, now: float) -> int:
        """Bytes free at every instant from ``now`` on (the first entry of :meth:`free_profile`)."""
        return self.capacity[server] - self.steps[server].max_from(now)

    def wait_s(self, server: int, now: float, need) -> np.ndarray:
        """Seconds from ``now`` until ``need`` bytes stay free (``inf`` if never); vectorised over
        ``need``; equal to ``wait_for(self.free_profile(server, now), need)``, found by scanning back
        from the last segment (cheap when the backlog is long)."""
        need = np.asarray(need)
        out = np.empty(need.shape)
        st, cap = self.steps[server], self.capacity[server]
        flat = out.reshape(-1)
        for k, n in enumerate(need.reshape(-1).tolist()):
            end = st.last_above_end(cap - n, now)
            flat[k] = 0.0 if end is None else end - now
        return out

    def free_profile(self, server: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        """``(times, free)``: from ``times[k]`` on, at least ``free[k]`` bytes stay free forever.
        Non-decreasing in both arrays; ``times[0] == now``.  O(number of future segments)."""
        times, levels = self.steps[server].segments_from(now)
        t = np.array([now] + times, dtype=float)
        lv = np.array(levels, dtype=np.int64)
        free = self.capacity[server] - np.maximum.accumulate(lv[::-1])[::-1]
        return t, free


class PublishedBook:
    """Per server, the active requests' completion times (sorted) and bytes, counted from the
    routing decision (a :class:`~distllm_env.release_list.ReleaseList` per server, so finding the
    release that frees enough is a tree descent, not a walk through the backlog)."""

    mode = "published"

    def __init__(self, capacity_bytes: Sequence[int]):
        self.capacity = [int(c) for c in capacity_bytes]
        self.releases = [ReleaseList() for _ in self.capacity]
        self.used = [0] * len(self.capacity)

    def advance(self, now: float) -> None:
        """Release the requests already finished (completion ≤ now), step 1 of the published
        simulator's routing step (docs/contracts.md §8)."""
        for j, rel in enumerate(self.releases):
            if rel.heads[0] <= now:
                self.used[j] -= rel.release_until(now)

    def free_bytes(self, server: int, t: float) -> int:
        return self.capacity[server] - self.used[server] + self.releases[server].sum_until(t)

    def used_bytes(self, server: int, t: float) -> int:
        return self.capacity[server] - self.free_bytes(server, t)

    def hop_start(self, server: int, need: int, t: float) -> float | None:
        """Earliest time ≥ t at which ``need`` bytes are free on one hop: t itself if they are free at
        t, else the completion time of the k-th active request (sorted by completion) with k the
        smallest count whose release frees enough (the WS-RR waiting rule, docs/model.md).  ``None``
        if it can never fit.  Absolute times, so a start equals a completion time exactly."""
        if need > self.capacity[server]:
            return None
        base = self.capacity[server] - self.used[server]
        rel = self.releases[server]
        if base + rel.sum_until(t) >= need:
            return t
        return rel.time_reaching(need - base)

    def earliest_start(self, now: float, hops: Hops, duration: float) -> float | None:
        """The chain's start: the maximum over its hops of :meth:`hop_start`."""
        start = now
        for j, need in hops:
            s = self.hop_start(j, need, now)
            if s is None:
                return None
            start = max(start, s)
        return start

    def earliest_starts(self, now: float, hop_sets, durations) -> list[float | None]:
        """:meth:`earliest_start` for several candidate chains; a (server, bytes) hop shared by
        several candidates is evaluated once (durations do not matter under this accounting)."""
        memo: dict = {}
        out = []
        for hops in hop_sets:
            start = now
            for key in hops:
                h = memo[key] if key in memo else memo.setdefault(key, self.hop_start(key[0], key[1], now))
                if h is None:
                    start = None
                    break
                start = max(start, h)
            out.append(start)
        return out

    def fits(self, t: float, hops: Hops, duration: float) -> bool:
        return all(self.free_bytes(j, t) >= need for j, need in hops)

    def commit(self, decided_at: float, start: float, end: float, hops: Hops) -> None:
        """Count each hop's bytes as used from now until ``end``.  Raises ``ValueError`` for a
        non-finite ``end``."""
        if not math.isfinite(end):
            raise ValueError(f"reservation times must be finite, got end {end}")
        for j, need in hops:
            self.releases[j].insert(end, need)
            self.used[j] += need

    def stays_free_bytes(self, server: int, now: float) -> int:
        """Bytes free from ``now`` on: free bytes only grow after now under this accounting."""
        return self.free_bytes(server, now)

    def wait_s(self, server: int, now: float, need) -> np.ndarray:
        """Seconds from ``now`` until ``need`` bytes are free (``inf`` if never); vectorised over
        ``need``; equal to ``wait_for(self.free_profile(server, now), need)`` (:meth:`hop_start` per
        need, without building the profile)."""
        need = np.asarray(need)
        out = np.empty(need.shape)
        flat = out.reshape(-1)
        for k, n in enumerate(need.reshape(-1).tolist()):
            start = self.hop_start(server, n, now)
            flat[k] = math.inf if start is None else start - now
        return out

    def free_profile(self, server: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        """``(times, free)``: free bytes after each future release (non-decreasing).  O(active)."""
        times, amounts = self.releases[server].items_after(now)
        t = np.array([now] + times, dtype=float)
        free = self.free_bytes(server, now) + np.concatenate([[0], np.cumsum(amounts, dtype=np.int64)])
        return t, free.astype(np.int64)


def make_book(mode: str, capacity_bytes: Sequence[int]) -> ReservationBook:
    """A reservation book for ``mode`` (``calendar`` or ``published``, docs/contracts.md §8) over
    per-server KV capacities in bytes.  Raises ``ValueError`` for another mode."""
    if mode == "calendar":
        return CalendarBook(capacity_bytes)
    if mode == "published":
        return PublishedBook(capacity_bytes)
    raise ValueError(f"reservation mode must be 'calendar' or 'published', got {mode!r}")


def wait_for(profile: tuple[np.ndarray, np.ndarray], need) -> np.ndarray:
    """Waiting time until ``need`` bytes are (and stay) free, from a free-bytes profile; ``inf``
    where ``need`` exceeds what ever becomes free.  Vectorised over ``need``."""
    times, free = profile
    need = np.asarray(need)
    k = np.searchsorted(free, need, side="left")
    out = np.full(need.shape, np.inf)
    ok = k < len(free)
    out[ok] = times[k[ok]] - times[0]
    return out


def start_with_backoff(book: "ReservationBook", arrival: float, hops: Hops, duration: float, cap_s: float = 60.0,
                       earliest: float | None = None) -> float | None:
    """The start under PETALS back-off: the first retry instant at or after the earliest feasible
    start at which the chain fits; re-checked, and moved on to later instants while it does not
    (docs/contracts.md §8).  ``None`` if the request can never fit.  ``earliest`` passes an already
    computed ``book.earliest_start(arrival, hops, duration)``.  Each retry instant is found in closed
    form (:func:`first_retry_at_or_after_s`), so a long wait costs no more than a short one."""
    start = book.earliest_start(arrival, hops, duration) if earliest is None else earliest
    t = arrival
    while start is not None:
        t = first_retry_at_or_after_s(arrival, max(start, t), cap_s)
        if not math.isfinite(t):
            return t
        if book.fits(t, hops, duration):
            return t
        start = book.earliest_start(t, hops, duration)
        # the next instant is strictly later than t: earliest_start(t) ≥ t, and t itself does not fit
        start = max(start, math.nextafter(t, math.inf)) if start is not None else None
    return None


__all__ = ["CalendarBook", "PublishedBook", "ReservationBook", "backoff_index", "backoff_instant_s",
           "backoff_instants_s", "backoff_round_s", "first_retry_at_or_after_s", "make_book", "start_with_backoff",
           "wait_for"]

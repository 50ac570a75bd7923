"""Reference implementations kept for tests: the simple, obviously-correct versions that the fast
ones in :mod:`distllm_env.reservations` and :mod:`distllm_env.step_function` must agree with bit for
bit.

* :class:`ReferenceCalendarBook`: the calendar book as flat per-server lists of breakpoints, scanned
  linearly (the implementation before the chunked step functions).
* :func:`reference_start_with_backoff` / :func:`reference_backoff_round_s`: PETALS back-off walking
  the retry instants one by one (before the closed form).
* :class:`ReferencePublishedBook`: the published book as flat sorted lists, released one by one.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Sequence

import numpy as np

Hops = Sequence[tuple[int, int]]
_NEG_INF = float("-inf")


class ReferenceCalendarBook:
    """Per-server step functions of reserved bytes: ``times[j][k]`` starts a segment of level
    ``levels[j][k]`` that lasts until ``times[j][k+1]`` (the last segment lasts forever)."""

    mode = "calendar"

    def __init__(self, capacity_bytes: Sequence[int]):
        self.capacity = [int(c) for c in capacity_bytes]
        n = len(self.capacity)
        self.times: list[list[float]] = [[_NEG_INF] for _ in range(n)]
        self.levels: list[list[int]] = [[0] for _ in range(n)]

    def advance(self, now: float) -> None:
        """Forget segments that ended before ``now`` (all later queries are at t ≥ now)."""
        for times, levels in zip(self.times, self.levels):
            k = bisect_right(times, now) - 1
            if k > 0:
                del times[:k]
                del levels[:k]

    def used_bytes(self, server: int, t: float) -> int:
        times = self.times[server]
        return self.levels[server][bisect_right(times, t) - 1]

    def free_bytes(self, server: int, t: float) -> int:
        return self.capacity[server] - self.used_bytes(server, t)

    def _last_violation_end(self, server: int, need: int, t0: float, t1: float) -> float | None:
        """End of the last segment overlapping [t0, t1) whose level leaves less than ``need`` free."""
        times, levels = self.times[server], self.levels[server]
        limit = self.capacity[server] - need
        k0 = bisect_right(times, t0) - 1
        k1 = bisect_left(times, t1)
        for k in range(k1 - 1, k0 - 1, -1):
            if levels[k] > limit:
                return times[k + 1]
        return None

    def fits(self, t: float, hops: Hops, duration: float) -> bool:
        return all(self._last_violation_end(j, need, t, t + duration) is None for j, need in hops)

    def earliest_start(self, now: float, hops: Hops, duration: float) -> float | None:
        """Earliest t ≥ now with room on every hop over [t, t + duration); ``None`` if a hop needs
        more than its whole capacity (the request can never fit)."""
        if any(need > self.capacity[j] for j, need in hops):
            return None
        t = now
        while True:
            t_next = t
            for j, need in hops:
                end = self._last_violation_end(j, need, t, t + duration)
                if end is not None and end > t_next:
                    t_next = end
            if t_next == t:
                return t
            t = t_next

    def earliest_starts(self, now: float, hop_sets, durations) -> list[float | None]:
        """:meth:`earliest_start` for several candidate chains."""
        return [self.earliest_start(now, hops, d) for hops, d in zip(hop_sets, durations)]

    def commit(self, decided_at: float, start: float, end: float, hops: Hops) -> None:
        for j, need in hops:
            times, levels = self.times[j], self.levels[j]
            i0 = _ensure_breakpoint(times, levels, start)
            i1 = _ensure_breakpoint(times, levels, end)
            for k in range(i0, i1):
                levels[k] += need

    def stays_free_bytes(self, server: int, now: float) -> int:
        """Bytes free at every instant from ``now`` on (the first entry of :meth:`free_profile`)."""
        times, levels = self.times[server], self.levels[server]
        return self.capacity[server] - max(levels[bisect_right(times, now) - 1:])

    def free_profile(self, server: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        """``(times, free)``: from ``times[k]`` on, at least ``free[k]`` bytes stay free forever.
        Non-decreasing in both arrays; ``times[0] == now``."""
        times, levels = self.times[server], self.levels[server]
        k0 = bisect_right(times, now) - 1
        t = np.array([now] + times[k0 + 1:], dtype=float)
        lv = np.array(levels[k0:], dtype=np.int64)
        free = self.capacity[server] - np.maximum.accumulate(lv[::-1])[::-1]
        return t, free


def _ensure_breakpoint(times: list[float], levels: list[int], t: float) -> int:
    k = bisect_left(times, t)
    if k < len(times) and times[k] == t:
        return k
    times.insert(k, t)
    levels.insert(k, levels[k - 1])
    return k


class ReferencePublishedBook:
    """Per server, the active requests' completion times (sorted) and bytes, counted from the
    routing decision."""

    mode = "published"

    def __init__(self, capacity_bytes: Sequence[int]):
        self.capacity = [int(c) for c in capacity_bytes]
        n = len(self.capacity)
        self.completions: list[list[float]] = [[] for _ in range(n)]
        self.amounts: list[list[int]] = [[] for _ in range(n)]
        self.used = [0] * n

    def advance(self, now: float) -> None:
        """Release the requests already finished (completion ≤ now), step 1 of the published simulator."""
        for j, comps in enumerate(self.completions):
            k = bisect_right(comps, now)
            if k:
                self.used[j] -= sum(self.amounts[j][:k])
                del comps[:k]
                del self.amounts[j][:k]

    def free_bytes(self, server: int, t: float) -> int:
        comps = self.completions[server]
        k = bisect_right(comps, t)
        return self.capacity[server] - self.used[server] + sum(self.amounts[server][:k])

    def used_bytes(self, server: int, t: float) -> int:
        return self.capacity[server] - self.free_bytes(server, t)

    def hop_start(self, server: int, need: int, t: float) -> float | None:
        """Earliest time ≥ t at which ``need`` bytes are free on one hop: t itself if they are free at
        t, else the completion time of the k-th active request (sorted by completion) with k the
        smallest count whose release frees enough.  ``None`` if it can never
        fit.  Absolute times, so a start equals a completion time exactly."""
        if need > self.capacity[server]:
            return None
        comps, amounts = self.completions[server], self.amounts[server]
        k = bisect_right(comps, t)
        free = self.capacity[server] - self.used[server] + sum(amounts[:k])
        if free >= need:
            return t
        for comp, amount in zip(comps[k:], amounts[k:]):
            free += amount
            if free >= need:
                return comp
        return None  # unreachable: releasing everything frees the whole capacity

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
        for j, need in hops:
            comps = self.completions[j]
            k = bisect_right(comps, end)
            comps.insert(k, end)
            self.amounts[j].insert(k, need)
            self.used[j] += need

    def stays_free_bytes(self, server: int, now: float) -> int:
        """Bytes free from ``now`` on: free bytes only grow after now under this accounting."""
        return self.free_bytes(server, now)

    def free_profile(self, server: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        """``(times, free)``: free bytes after each future release (non-decreasing)."""
        comps = self.completions[server]
        k = bisect_right(comps, now)
        t = np.array([now] + comps[k:], dtype=float)
        base = self.capacity[server] - self.used[server] + sum(self.amounts[server][:k])
        free = base + np.concatenate([[0], np.cumsum(self.amounts[server][k:], dtype=np.int64)])
        return t, free.astype(np.int64)


def reference_backoff_instants_s(cap_s: float = 60.0):
    """Cumulative PETALS retry instants after arrival: 0 (first try), 1, 3, 7, 15, 31, 63, 123, …
    (steps double from 1 s, capped at 60 s)."""
    t, step = 0.0, 1.0
    while True:
        yield t
        t += step
        step = min(step * 2.0, cap_s)


def reference_start_with_backoff(book, arrival: float, hops: Hops, duration: float, cap_s: float = 60.0,
                       earliest: float | None = None) -> float | None:
    """The start under PETALS back-off: the first retry instant at or after the earliest feasible
    start at which the chain fits; re-checked, and moved on to later instants while it does not
    (docs/contracts.md §8).  ``None`` if the request can never fit.  ``earliest`` passes an already
    computed ``book.earliest_start(arrival, hops, duration)``."""
    start = book.earliest_start(arrival, hops, duration) if earliest is None else earliest
    instants = reference_backoff_instants_s(cap_s)
    t = next(instants)
    while start is not None:
        while arrival + t < start:
            t = next(instants)
        if book.fits(arrival + t, hops, duration):
            return arrival + t
        start = book.earliest_start(arrival + t, hops, duration)
    return None


def reference_backoff_round_s(raw_wait_s: float, cap_s: float = 60.0) -> float:
    """PETALS client retry back-off: the first cumulative back-off instant (1, 3, 7, 15, 31, 63,
    123, … s; steps double from 1 s and are capped at 60 s) that is ≥ the raw wait; 0 stays 0.

    Source: petals ``client/routing/sequence_manager.py`` retry delay min(2^(k−1), 60) s
    (petals ``client/routing/sequence_manager.py``)."""
    if raw_wait_s <= 1e-9:
        return 0.0
    t, step = 0.0, 1.0
    while t < raw_wait_s - 1e-9:
        t += step
        step = min(step * 2.0, cap_s)
    return t

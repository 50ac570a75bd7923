"""The sorted releases of one server under ``published`` accounting: (completion time, bytes) pairs
in completion order, with prefix sums.

The published book (:class:`~distllm_env.reservations.PublishedBook`) asks "which release makes the
cumulative freed bytes reach x?".  Under overload every routed request stays in the list until it
completes, so the list grows with the backlog.  It is kept in chunks of at most ``2·CHUNK`` pairs
(as in a sorted-containers ``SortedList``), with each chunk's sum and a segment tree over those sums:

* inserting a pair: two bisections and one chunk shift, O(log n + CHUNK);
* releasing everything up to a time: whole chunks, then one chunk's head;
* the first pair whose inclusive prefix sum reaches x: a descent of the sum tree, O(log chunks),
  then a scan of one chunk.

Times in seconds, amounts in bytes (positive ints).  Answers equal those of one flat sorted list
(the reference implementation in ``tests/reference_books.py``); chunking changes cost, not values.
"""

from __future__ import annotations

from bisect import bisect_right

#: Chunk size target: chunks hold up to 2·CHUNK pairs.
CHUNK = 128
_INF = float("inf")


class ReleaseList:
    """(time, amount) pairs sorted by time (ties: insertion order), with prefix sums."""

    __slots__ = ("ts", "am", "sums", "heads", "total", "_P", "_tree")

    def __init__(self) -> None:
        self.ts: list[list[float]] = [[]]
        self.am: list[list[int]] = [[]]
        self.sums: list[int] = [0]
        self.heads: list[float] = [_INF]      # first time of each chunk (inf for the empty list)
        self.total = 0
        self._P = 0                            # 0: the sum tree must be rebuilt before use
        self._tree: list[int] = []

    def __len__(self) -> int:
        return sum(len(t) for t in self.ts)

    # -- the sum tree --------------------------------------------------------------------------------
    def _rebuild(self) -> None:
        n = len(self.sums)
        P = 1
        while P < n:
            P *= 2
        tree = [0] * (2 * P)
        tree[P:P + n] = self.sums
        for i in range(P - 1, 0, -1):
            tree[i] = tree[2 * i] + tree[2 * i + 1]
        self._P, self._tree = P, tree

    def _set(self, c: int) -> None:
        if not self._P:
            return
        tree = self._tree
        i = c + self._P
        tree[i] = self.sums[c]
        i >>= 1
        while i:
            tree[i] = tree[2 * i] + tree[2 * i + 1]
            i >>= 1

    # -- updates -------------------------------------------------------------------------------------
    def insert(self, t: float, amount: int) -> None:
        """Add a release of ``amount`` bytes at time ``t`` (after any equal times)."""
        c = max(bisect_right(self.heads, t) - 1, 0)
        ts, am = self.ts[c], self.am[c]
        i = bisect_right(ts, t)
        ts.insert(i, t)
        am.insert(i, amount)
        self.sums[c] += amount
        self.heads[c] = ts[0]
        self.total += amount
        if len(ts) > 2 * CHUNK:
            h = len(ts) // 2
            self.ts[c:c + 1] = [ts[:h], ts[h:]]
            self.am[c:c + 1] = [am[:h], am[h:]]
            self.sums[c:c + 1] = [sum(am[:h]), sum(am[h:])]
            self.heads[c:c + 1] = [ts[0], ts[h]]
            self._P = 0
        else:
            self._set(c)

    def release_until(self, now: float) -> int:
        """Remove the pairs with time ≤ ``now``; returns their total amount."""
        freed = 0
        while len(self.ts) > 1 and self.ts[0][-1] <= now:       # whole chunks
            freed += self.sums[0]
            del self.ts[0], self.am[0], self.sums[0], self.heads[0]
            self._P = 0
        ts = self.ts[0]
        k = bisect_right(ts, now)
        if k:
            am = self.am[0]
            part = sum(am[:k])
            del ts[:k], am[:k]
            freed += part
            self.sums[0] -= part
            self.heads[0] = ts[0] if ts else _INF
            self._set(0)
        self.total -= freed
        return freed

    # -- queries -------------------------------------------------------------------------------------
    def sum_until(self, t: float) -> int:
        """Total amount of the pairs with time ≤ ``t``."""
        c = bisect_right(self.heads, t) - 1
        if c < 0:
            return 0
        return sum(self.sums[:c]) + sum(self.am[c][:bisect_right(self.ts[c], t)])

    def time_reaching(self, x: int) -> float | None:
        """The time of the first pair at which the inclusive prefix sum reaches ``x`` (> 0);
        ``None`` if the total stays below ``x``.

        Raises:
            AssertionError: only if the chunk sums are internally inconsistent (a bug, never on valid use)."""
        if self.total < x:
            return None
        if not self._P:
            self._rebuild()
        tree, P = self._tree, self._P
        i = 1
        while i < P:                         # descend: the leftmost chunk where the prefix reaches x
            if tree[2 * i] >= x:
                i = 2 * i
            else:
                x -= tree[2 * i]
                i = 2 * i + 1
        c = i - P
        acc = 0
        for k, a in enumerate(self.am[c]):
            acc += a
            if acc >= x:
                return self.ts[c][k]
        raise AssertionError("chunk sum out of date")   # pragma: no cover

    def items_after(self, t: float) -> tuple[list[float], list[int]]:
        """Flat lists of the times and amounts of the pairs with time > ``t``, O(n)."""
        times: list[float] = []
        amounts: list[int] = []
        for ts, am in zip(self.ts, self.am):
            k = bisect_right(ts, t)
            times.extend(ts[k:])
            amounts.extend(am[k:])
        return times, amounts


__all__ = ["CHUNK", "ReleaseList"]

"""A piecewise-constant step function of reserved bytes over time, for one server.

The calendar reservation book (:class:`~distllm_env.reservations.CalendarBook`) keeps one per
server.  Segment k starts at breakpoint ``t_k`` and lasts until ``t_{k+1}`` (the last one lasts
forever); its level is the bytes reserved over it.  Under overload the number of future segments
grows with the backlog, so the segments are kept in chunks of at most ``2·CHUNK`` (as in a
sorted-containers ``SortedList``), each with its minimum, maximum and a lazy add:

* locating a time is two bisections, O(log n);
* inserting a breakpoint shifts one chunk, O(CHUNK); splitting a chunk shifts the chunk index;
* adding bytes over an interval touches the two boundary chunks element-wise and the chunks between
  them in O(1) each (lazy add);
* two segment trees over the chunks' minima and maxima find "the first chunk at or below a level"
  and "the last chunk above a level" in O(log chunks); a lazy add updates them in O(log chunks) per
  chunk, and a change in the number of chunks (a split, pruning) marks them for a rebuild;
* "the last segment above a level in a window" scans back from the window's end, skipping chunks
  whose maximum rules them out, so it costs the segments in the window, not the backlog.

Times are seconds (floats), levels bytes (ints).  All answers are exactly those of a flat list of
breakpoints (the reference implementation in ``tests/reference_books.py``): the chunking changes
cost, never values.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

#: Chunk size target: chunks hold CHUNK..2·CHUNK segments (the first and last may hold fewer).
CHUNK = 128
_INF = float("inf")


class StepFunction:
    """Reserved bytes of one server as a step function; starts at level 0 from −∞."""

    __slots__ = ("ts", "lv", "lz", "mx", "mn", "heads", "_above", "_P", "_tmn", "_tmx")

    def __init__(self) -> None:
        self.ts: list[list[float]] = [[float("-inf")]]   # breakpoints, per chunk
        self.lv: list[list[int]] = [[0]]                 # levels without the chunk's lazy add
        self.lz: list[int] = [0]                         # lazy add per chunk
        self.mx: list[int] = [0]                         # true maximum level per chunk
        self.mn: list[int] = [0]                         # true minimum level per chunk
        self.heads: list[float] = [float("-inf")]        # first breakpoint of each chunk
        self._above: dict[int, float | None] = {}        # cached last_above_end per limit
        # segment trees over the chunks' minima and maxima (leaves from index _P; 0: rebuild)
        self._P = 0
        self._tmn: list = []
        self._tmx: list = []

    # -- locating ------------------------------------------------------------------------------------
    def _containing(self, t: float) -> tuple[int, int]:
        """(chunk, index) of the segment containing ``t`` (the last breakpoint ≤ t).  Raises
        ``ValueError`` for a time before the first kept breakpoint (pruned history)."""
        c = bisect_right(self.heads, t) - 1
        if c < 0:
            raise ValueError(f"time {t} precedes the step function's first breakpoint {self.heads[0]}")
        return c, bisect_right(self.ts[c], t) - 1

    def _before(self, t: float) -> tuple[int, int]:
        """(chunk, index) of the last segment starting strictly before ``t``; (−1, −1) if none."""
        c = bisect_left(self.heads, t) - 1
        if c < 0:
            return -1, -1
        return c, bisect_left(self.ts[c], t) - 1

    def _end(self, c: int, i: int) -> float:
        """End time of segment (c, i): the next breakpoint, ``inf`` for the last segment."""
        ts = self.ts[c]
        if i + 1 < len(ts):
            return ts[i + 1]
        return self.heads[c + 1] if c + 1 < len(self.ts) else _INF

    def level(self, t: float) -> int:
        """Bytes reserved at time ``t``."""
        c, i = self._containing(t)
        return self.lv[c][i] + self.lz[c]

    def _refresh(self, c: int) -> None:
        lv, z = self.lv[c], self.lz[c]
        self.mx[c] = max(lv) + z
        self.mn[c] = min(lv) + z
        self.heads[c] = self.ts[c][0]
        self._set(c)

    # -- the chunk trees -------------------------------------------------------------------------------
    def _rebuild(self) -> None:
        n = len(self.mx)
        P = 1
        while P < n:
            P *= 2
        tmn = [_INF] * (2 * P)
        tmx = [-_INF] * (2 * P)
        tmn[P:P + n] = self.mn
        tmx[P:P + n] = self.mx
        for i in range(P - 1, 0, -1):
            a, b = tmn[2 * i], tmn[2 * i + 1]
            tmn[i] = a if a < b else b
            a, b = tmx[2 * i], tmx[2 * i + 1]
            tmx[i] = a if a > b else b
        self._P, self._tmn, self._tmx = P, tmn, tmx

    def _set(self, c: int) -> None:
        """Chunk c's minimum or maximum changed: update its leaf and ancestors, O(log chunks)."""
        if not self._P:
            return                     # trees are rebuilt before the next use
        i = c + self._P
        tmn, tmx = self._tmn, self._tmx
        tmn[i], tmx[i] = self.mn[c], self.mx[c]
        i >>= 1
        while i:
            a, b = tmn[2 * i], tmn[2 * i + 1]
            tmn[i] = a if a < b else b
            a, b = tmx[2 * i], tmx[2 * i + 1]
            tmx[i] = a if a > b else b
            i >>= 1

    def _first_chunk_at_or_below(self, c: int, limit: int) -> int:
        """The first chunk index ≥ c whose minimum is ≤ ``limit`` (len(chunks) if none)."""
        if not self._P:
            self._rebuild()
        P, t = self._P, self._tmn
        if c >= len(self.mn):
            return len(self.mn)
        i = c + P
        if t[i] > limit:
            while True:                # climb until a right sibling holds a qualifying chunk
                if i == 1:
                    return len(self.mn)
                if not i & 1 and t[i + 1] <= limit:
                    i += 1
                    break
                i >>= 1
            while i < P:               # descend to its leftmost qualifying leaf
                i = 2 * i if t[2 * i] <= limit else 2 * i + 1
        return i - P

    def _last_chunk_above(self, limit: int) -> int:
        """The last chunk index whose maximum exceeds ``limit`` (−1 if none)."""
        if not self._P:
            self._rebuild()
        P, t = self._P, self._tmx
        if t[1] <= limit:
            return -1
        i = 1
        while i < P:
            i = 2 * i + 1 if t[2 * i + 1] > limit else 2 * i
        return i - P

    # -- updates -------------------------------------------------------------------------------------
    def _ensure_breakpoint(self, t: float) -> None:
        c, i = self._containing(t)
        ts = self.ts[c]
        if ts[i] == t:
            return
        ts.insert(i + 1, t)
        lv = self.lv[c]
        lv.insert(i + 1, lv[i])
        if len(ts) > 2 * CHUNK:
            self._split(c)

    def _split(self, c: int) -> None:
        ts, lv = self.ts[c], self.lv[c]
        h = len(ts) // 2
        self.ts[c:c + 1] = [ts[:h], ts[h:]]
        self.lv[c:c + 1] = [lv[:h], lv[h:]]
        z = self.lz[c]
        self.lz[c:c + 1] = [z, z]
        self.mx[c:c + 1] = [0, 0]
        self.mn[c:c + 1] = [0, 0]
        self.heads[c:c + 1] = [0.0, 0.0]
        self._P = 0                    # chunk indices moved: rebuild the trees when next needed
        self._refresh(c)
        self._refresh(c + 1)

    def add(self, start: float, end: float, amount: int) -> None:
        """Add ``amount`` bytes over ``[start, end)`` (start < end, both finite)."""
        self._above.clear()
        self._ensure_breakpoint(start)
        self._ensure_breakpoint(end)
        c0, i0 = self._containing(start)
        c1, i1 = self._containing(end)       # exclusive
        if c0 == c1:
            lv = self.lv[c0]
            lv[i0:i1] = [x + amount for x in lv[i0:i1]]
            self._refresh(c0)
            return
        lv = self.lv[c0]
        lv[i0:] = [x + amount for x in lv[i0:]]
        self._refresh(c0)
        for c in range(c0 + 1, c1):
            self.lz[c] += amount
            self.mx[c] += amount
            self.mn[c] += amount
            self._set(c)
        if i1:
            lv = self.lv[c1]
            lv[:i1] = [x + amount for x in lv[:i1]]
            self._refresh(c1)

    def prune(self, now: float) -> None:
        """Forget the segments that ended at or before ``now`` (the one containing ``now`` stays)."""
        c, i = self._containing(now)
        if c:
            del self.ts[:c], self.lv[:c], self.lz[:c], self.mx[:c], self.mn[:c], self.heads[:c]
            self._P = 0
        if i:
            del self.ts[0][:i], self.lv[0][:i]
            self._refresh(0)

    # -- queries -------------------------------------------------------------------------------------
    def max_from(self, t: float) -> int:
        """Maximum level over [t, ∞)."""
        c, i = self._containing(t)
        if c == 0 and i == 0:        # from the first segment on: the maximum of all (tree root)
            if not self._P:
                self._rebuild()
            return self._tmx[1]
        m = max(self.lv[c][i:]) + self.lz[c]
        if c + 1 < len(self.mx):
            m = max(m, max(self.mx[c + 1:]))
        return m

    def last_violation_end(self, limit: int, t0: float, t1: float) -> float | None:
        """End of the last segment overlapping [t0, t1) — from the one containing t0 to the last that
        starts before t1 — whose level exceeds ``limit``; ``None`` if there is none."""
        c0, i0 = self._containing(t0)
        c1, i1 = self._before(t1)
        if (c1, i1) < (c0, i0):
            return None
        for c in range(c1, c0 - 1, -1):
            if self.mx[c] <= limit:
                continue
            lo = i0 if c == c0 else 0
            hi = i1 if c == c1 else len(self.ts[c]) - 1
            lim = limit - self.lz[c]
            lv = self.lv[c]
            for i in range(hi, lo - 1, -1):
                if lv[i] > lim:
                    return self._end(c, i)
        return None

    def first_at_or_below(self, limit: int, t: float) -> float:
        """The earliest time ≥ ``t`` whose segment has level ≤ ``limit`` (``t`` itself if its own
        segment qualifies, else the start of the first later segment that does; ``inf`` if none).
        Chunks entirely above the limit are skipped through the chunk tree, O(log chunks).

        Raises:
            AssertionError: only if the chunk tree is internally inconsistent (a bug, never on valid use)."""
        c0, i0 = self._containing(t)
        lim = limit - self.lz[c0]
        lv = self.lv[c0]
        for k in range(i0, len(lv)):
            if lv[k] <= lim:
                return t if k == i0 else self.ts[c0][k]
        c = self._first_chunk_at_or_below(c0 + 1, limit)
        if c >= len(self.ts):
            return _INF
        lim = limit - self.lz[c]
        lv = self.lv[c]
        for k in range(len(lv)):
            if lv[k] <= lim:
                return self.ts[c][k]
        raise AssertionError("chunk minimum out of date")   # pragma: no cover

    def earliest_clear(self, limit: int, t: float, duration: float) -> float:
        """Earliest t' ≥ ``t`` with level ≤ ``limit`` on every segment overlapping [t', t' + duration)
        (the segment containing t' up to the last one starting before t' + duration).  Segments
        above the limit are skipped first (a start inside one can never fit while t' + duration > t';
        the skip is not taken where the floating-point window is empty)."""
        while True:
            s = self.first_at_or_below(limit, t)
            if s != t and s != _INF and s + duration > s:
                t = s
            end = self.last_violation_end(limit, t, t + duration)
            if end is None or end == _INF:   # clear, or above the limit forever (never clear)
                return t if end is None else _INF
            t = end

    def last_above_end(self, limit: int, now: float) -> float | None:
        """End of the last segment, from the one containing ``now`` on, whose level exceeds
        ``limit`` (``inf`` if it is the last segment); ``None`` if there is none.  The end of the
        last such segment over the whole function is cached per limit until the next :meth:`add`."""
        if limit in self._above:
            end = self._above[limit]
        else:
            end = self._above[limit] = self._last_above_end_all(limit)
        if end is None or end <= now:   # it ended before the segment containing now began
            return None
        return end

    def _last_above_end_all(self, limit: int) -> float | None:
        c = self._last_chunk_above(limit)
        if c < 0:
            return None
        lim = limit - self.lz[c]
        lv = self.lv[c]
        for i in range(len(lv) - 1, -1, -1):
            if lv[i] > lim:
                return self._end(c, i)
        raise AssertionError("chunk maximum out of date")   # pragma: no cover

    def segments_from(self, now: float) -> tuple[list[float], list[int]]:
        """``(breakpoints after now, levels from the segment containing now)``: flat lists, O(n)."""
        c, i = self._containing(now)
        times: list[float] = []
        levels: list[int] = []
        for k in range(c, len(self.ts)):
            z = self.lz[k]
            lo = i if k == c else 0
            times.extend(self.ts[k][lo:])
            levels.extend(x + z for x in self.lv[k][lo:])
        return times[1:], levels

    def __len__(self) -> int:
        return sum(len(ts) for ts in self.ts)


__all__ = ["CHUNK", "StepFunction"]

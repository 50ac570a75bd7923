"""The fast reservation books and closed-form back-off agree bit for bit with the simple reference
implementations in tests/reference_books.py, on random workloads in both reservation modes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from distllm_env import release_list, step_function
from distllm_env.reservations import (CalendarBook, PublishedBook, ReservationBook, backoff_index, backoff_instant_s,
                                      backoff_round_s, first_retry_at_or_after_s, make_book, start_with_backoff,
                                      wait_for)
from tests.reference_books import (ReferenceCalendarBook, ReferencePublishedBook, reference_backoff_instants_s,
                                   reference_backoff_round_s, reference_start_with_backoff)

CAPS = [10, 7, 40]

# a workload: requests arriving over time, each needing bytes on a few servers for a duration
_hop = st.tuples(st.integers(0, len(CAPS) - 1), st.integers(1, 12))
_req = st.tuples(st.one_of(st.floats(0.0, 3.0, allow_nan=False), st.just(0.0), st.floats(0.0, 0.3)),  # gap
                 st.lists(_hop, min_size=1, max_size=3, unique_by=lambda h: h[0]),
                 st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.25, 7.0]),         # hold time
                 st.booleans())                                            # back-off on?
_workload = st.lists(_req, min_size=1, max_size=40)


def _replay(book, ref, workload, *, published: bool):
    """Drive both books through the same arrivals; compare every answer on the way."""
    now = 0.0
    for gap, hops, hold, backoff in workload:
        now += gap
        book.advance(now)
        ref.advance(now)
        for j in range(len(CAPS)):
            assert book.used_bytes(j, now) == ref.used_bytes(j, now)
            assert book.stays_free_bytes(j, now) == ref.stays_free_bytes(j, now)
            prof, ref_prof = book.free_profile(j, now), ref.free_profile(j, now)
            assert np.array_equal(prof[0], ref_prof[0]) and np.array_equal(prof[1], ref_prof[1])
            needs = np.arange(0, CAPS[j] + 3)
            assert np.array_equal(book.wait_s(j, now, needs), wait_for(ref_prof, needs))
            if published:
                for n in needs.tolist():
                    assert book.hop_start(j, n, now) == ref.hop_start(j, n, now)
                    assert book.free_bytes(j, now + n / 4) == ref.free_bytes(j, now + n / 4)
        start = book.earliest_start(now, hops, hold)
        assert start == ref.earliest_start(now, hops, hold)
        if backoff and start is not None:
            start = start_with_backoff(book, now, hops, hold)
            assert start == reference_start_with_backoff(ref, now, hops, hold)
        if start is None:
            continue
        assert book.fits(start, hops, hold) and ref.fits(start, hops, hold)
        book.commit(now, start, start + hold, hops)
        ref.commit(now, start, start + hold, hops)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workload=_workload, chunk=st.sampled_from([1, 2, 3, 128]))
def test_calendar_book_matches_flat_reference(workload, chunk):
    old = step_function.CHUNK
    step_function.CHUNK = chunk        # tiny chunks exercise splitting, lazy adds and chunk skipping
    try:
        _replay(CalendarBook(CAPS), ReferenceCalendarBook(CAPS), workload, published=False)
    finally:
        step_function.CHUNK = old


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workload=_workload, chunk=st.sampled_from([1, 2, 128]))
def test_published_book_matches_flat_reference(workload, chunk):
    old = release_list.CHUNK
    release_list.CHUNK = chunk         # tiny chunks exercise splitting and the sum tree
    try:
        _replay(PublishedBook(CAPS), ReferencePublishedBook(CAPS), workload, published=True)
    finally:
        release_list.CHUNK = old


def test_both_books_implement_the_protocol():
    for mode in ("calendar", "published"):
        assert isinstance(make_book(mode, CAPS), ReservationBook)
    with pytest.raises(ValueError, match="reservation mode"):
        make_book("lifo", CAPS)


def test_calendar_commit_refuses_non_finite_times():
    book = CalendarBook([10])
    with pytest.raises(ValueError, match="finite"):
        book.commit(0.0, 0.0, math.inf, [(0, 1)])


# -- back-off in closed form ----------------------------------------------------------------------------

def test_backoff_instants_closed_form_equals_iteration():
    it = reference_backoff_instants_s()
    for k in range(5000):
        assert backoff_instant_s(k) == next(it)
    assert [backoff_instant_s(k) for k in range(9)] == [0, 1, 3, 7, 15, 31, 63, 123, 183]


@settings(max_examples=300, deadline=None)
@given(wait=st.one_of(st.floats(0.0, 5000.0, allow_nan=False), st.integers(0, 5000).map(float),
                      st.integers(0, 80).map(lambda k: backoff_instant_s(k)),
                      st.integers(0, 80).map(lambda k: math.nextafter(backoff_instant_s(k), math.inf)),
                      st.integers(1, 80).map(lambda k: math.nextafter(backoff_instant_s(k), 0.0))),
       arrival=st.sampled_from([0.0, 0.1, 1.0 / 3.0, 17.25, 1234.5678, 1e6 + 0.3]))
def test_backoff_round_and_first_retry_match_walking(wait, arrival):
    assert backoff_round_s(wait) == reference_backoff_round_s(wait)
    walked = arrival
    for t in reference_backoff_instants_s():
        if not arrival + t < arrival + wait:
            walked = arrival + t
            break
    assert first_retry_at_or_after_s(arrival, arrival + wait) == walked


def test_backoff_of_huge_waits_returns():
    """A 1e8 s wait walked 1.7 million instants, a 1e12 s one never ended; both are O(1) now."""
    for wait in (1e8, 1e12, 3.3e13):
        k = backoff_index(wait)
        assert backoff_instant_s(k) >= wait > backoff_instant_s(k - 1)
        assert backoff_round_s(wait) == backoff_instant_s(k)
    assert backoff_index(math.inf) is None and backoff_round_s(math.inf) == math.inf
    book = CalendarBook([10])
    book.commit(0.0, 0.0, 1e12, [(0, 8)])
    start = start_with_backoff(book, 5.0, [(0, 4)], 2.0)
    assert start == 5.0 + backoff_instant_s(backoff_index(1e12 - 5.0)) and start >= 1e12


# -- the step function itself, against a flat list of breakpoints ----------------------------------------

class _FlatSteps:
    """Obviously correct: one flat list of breakpoints and levels."""

    def __init__(self):
        self.times, self.levels = [-math.inf], [0]

    def _k(self, t):
        return max(k for k, x in enumerate(self.times) if x <= t)

    def add(self, a, b, amount):
        for t in (a, b):
            k = self._k(t)
            if self.times[k] != t:
                self.times.insert(k + 1, t)
                self.levels.insert(k + 1, self.levels[k])
        for k, t in enumerate(self.times):
            if a <= t < b:
                self.levels[k] += amount

    def prune(self, now):
        k = self._k(now)
        del self.times[:k], self.levels[:k]

    def end(self, k):
        return self.times[k + 1] if k + 1 < len(self.times) else math.inf

    def last_violation_end(self, limit, t0, t1):
        # segments from the one containing t0 to the last that starts before t1
        ks = [k for k in range(self._k(t0), len(self.times)) if self.times[k] < t1]
        bad = [k for k in ks if self.levels[k] > limit]
        return self.end(bad[-1]) if bad else None

    def earliest_clear(self, limit, t, d):
        while True:
            e = self.last_violation_end(limit, t, t + d)
            if e is None:
                return t
            t = e


_op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 60), st.integers(1, 30), st.integers(1, 9)),
    # few distinct breakpoints: adds over existing breakpoints span whole chunks without splitting
    st.tuples(st.just("add"), st.integers(0, 12).map(lambda x: 4 * x), st.integers(1, 8).map(lambda x: 4 * x),
              st.integers(1, 9)),
    st.tuples(st.just("prune"), st.integers(0, 60)),
    st.tuples(st.just("query"), st.integers(0, 90), st.integers(0, 20), st.integers(0, 12)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, min_size=1, max_size=80), chunk=st.sampled_from([1, 2, 3]))
def test_step_function_matches_flat_list(ops, chunk):
    old = step_function.CHUNK
    step_function.CHUNK = chunk
    try:
        fast, flat, now = step_function.StepFunction(), _FlatSteps(), 0.0
        for op in ops:
            if op[0] == "add":
                a = now + op[1] / 4.0
                fast.add(a, a + op[2] / 4.0, op[3])
                flat.add(a, a + op[2] / 4.0, op[3])
            elif op[0] == "prune":
                now = max(now, op[1] / 4.0)
                fast.prune(now)
                flat.prune(now)
            else:
                t, d, limit = now + op[1] / 4.0, op[2] / 4.0, op[3]
                assert fast.level(t) == flat.levels[flat._k(t)]
                assert fast.max_from(t) == max(flat.levels[flat._k(t):])
                assert fast.last_violation_end(limit, t, t + d) == flat.last_violation_end(limit, t, t + d)
                assert fast.earliest_clear(limit, t, d) == flat.earliest_clear(limit, t, d)
                bad = [k for k in range(flat._k(t), len(flat.times)) if flat.levels[k] > limit]
                assert fast.last_above_end(limit, t) == (flat.end(bad[-1]) if bad else None)
            times, levels = fast.segments_from(now)
            assert times == flat.times[flat._k(now) + 1:] and levels == flat.levels[flat._k(now):]
    finally:
        step_function.CHUNK = old


def test_step_function_chunk_trees_follow_lazy_adds():
    """An add over existing breakpoints spans whole chunks lazily; the chunk trees must follow."""
    old = step_function.CHUNK
    step_function.CHUNK = 1
    try:
        f, flat = step_function.StepFunction(), _FlatSteps()
        for a in range(0, 40, 4):
            f.add(a, a + 4, 1)
            flat.add(a, a + 4, 1)
        assert f.first_at_or_below(0, 0.0) == 40 and f.max_from(-1.0) == 1    # builds the trees
        f.add(0, 40, 5)
        flat.add(0, 40, 5)
        for limit in range(0, 8):
            bad = [k for k in range(len(flat.times)) if flat.levels[k] > limit]
            assert f.last_above_end(limit, 0.0) == (flat.end(bad[-1]) if bad else None)
            assert f.earliest_clear(limit, 0.0, 2.0) == flat.earliest_clear(limit, 0.0, 2.0)
        assert f.max_from(-1.0) == 6
    finally:
        step_function.CHUNK = old

"""PETALS client retry back-off: the cumulative retry instants and, in closed form, the first one
at or after a given time.

PETALS retries a failed allocation after min(2^(k−1), 60) s (petals
``client/routing/sequence_manager.py``), so the k-th retry happens 0, 1, 3, 7, 15, 31, 63, 123, … s
after the first try (docs/model.md).  Walking these instants one by one costs O(wait / 60 s); the
functions here find the index with a logarithm or a division and fix it up by ±1 with the same
floating-point comparison as the walk, so the results are bit-identical and cost O(1).
"""

from __future__ import annotations

import math


def backoff_instants_s(cap_s: float = 60.0):
    """Cumulative PETALS retry instants after arrival: 0 (first try), 1, 3, 7, 15, 31, 63, 123, …
    (steps double from 1 s, capped at ``cap_s``).  The iterative definition; :func:`backoff_instant_s`
    gives the k-th instant in closed form."""
    t, step = 0.0, 1.0
    while True:
        yield t
        t += step
        step = min(step * 2.0, cap_s)


def _doublings(cap_s: float) -> int:
    """Number of doubling steps 1, 2, 4, … before the step reaches ``cap_s`` (6 for 60 s)."""
    i, step = 0, 1.0
    while step < cap_s:
        i, step = i + 1, step * 2.0
    return i


def backoff_instant_s(k: int, cap_s: float = 60.0) -> float:
    """The k-th cumulative retry instant (k = 0 → 0 s), in closed form: 2^k − 1 while the steps
    double, then 2^i − 1 + cap·(k − i) with i = the number of doubling steps.

    Equal, bit for bit, to the k-th value of :func:`backoff_instants_s` when ``cap_s`` is an integer
    and the instant is below 2^53 (every partial sum is then an exactly representable integer); the
    PETALS cap is 60 s.  Raises ``ValueError`` for k < 0."""
    if k < 0:
        raise ValueError(f"retry index must be ≥ 0, got {k}")
    i = _doublings(cap_s)
    if k <= i:
        return float(2 ** k - 1)
    return float(2 ** i - 1) + cap_s * (k - i)


def backoff_index(wait_s: float, cap_s: float = 60.0) -> int | None:
    """Smallest k with ``backoff_instant_s(k) ≥ wait_s`` (0 for wait_s ≤ 0); ``None`` for a wait
    that is not finite.  Computed directly with a logarithm (doubling phase) or a division (capped
    phase), then corrected by ±1 with exact comparisons, so it agrees with walking the instants."""
    if not math.isfinite(wait_s):
        return None
    if wait_s <= 0.0:
        return 0
    i = _doublings(cap_s)
    prefix = float(2 ** i - 1)
    if wait_s <= prefix:
        k = max(0, math.ceil(math.log2(wait_s + 1.0)))
    else:
        k = i + max(0, math.ceil((wait_s - prefix) / cap_s))
    while k > 0 and backoff_instant_s(k - 1, cap_s) >= wait_s:
        k -= 1
    while backoff_instant_s(k, cap_s) < wait_s:
        k += 1
    return k


def first_retry_at_or_after_s(arrival_s: float, t_s: float, cap_s: float = 60.0) -> float:
    """The first retry instant ``arrival_s + backoff_instant_s(k)`` that is ≥ ``t_s``, with the same
    floating-point comparison as walking the instants one by one (``arrival + t_k < t`` moves on),
    in O(1).  ``inf`` when ``t_s`` is not finite.  Source of the instants: petals
    ``client/routing/sequence_manager.py`` retry delay min(2^(k−1), 60) s (docs/model.md)."""
    if not math.isfinite(t_s):
        return math.inf
    k = backoff_index(t_s - arrival_s, cap_s)
    if k is None:
        return math.inf
    # exact fix-up on the sum actually compared (arrival + t_k), which may round differently
    while k > 0 and not arrival_s + backoff_instant_s(k - 1, cap_s) < t_s:
        k -= 1
    while arrival_s + backoff_instant_s(k, cap_s) < t_s:
        k += 1
    return arrival_s + backoff_instant_s(k, cap_s)


def backoff_round_s(raw_wait_s: float, cap_s: float = 60.0) -> float:
    """PETALS client retry back-off: the first cumulative back-off instant (1, 3, 7, 15, 31, 63,
    123, … s; steps double from 1 s and are capped at 60 s) that is ≥ the raw wait; 0 stays 0.
    Closed form (:func:`backoff_index`); ``inf`` for an infinite wait.

    Source: petals ``client/routing/sequence_manager.py`` retry delay min(2^(k−1), 60) s."""
    if raw_wait_s <= 1e-9:
        return 0.0
    k = backoff_index(raw_wait_s - 1e-9, cap_s)
    if k is None:
        return math.inf
    # the iterative version moves on while t < raw − 1e-9: the first instant ≥ raw − 1e-9
    while k > 0 and not backoff_instant_s(k - 1, cap_s) < raw_wait_s - 1e-9:
        k -= 1
    while backoff_instant_s(k, cap_s) < raw_wait_s - 1e-9:
        k += 1
    return backoff_instant_s(k, cap_s)


__all__ = ["backoff_index", "backoff_instant_s", "backoff_instants_s", "backoff_round_s", "first_retry_at_or_after_s"]

"""The action encoding and coverage rule of ``distllm/BlockPlacement-v0``
(:mod:`distllm_env.envs.placement`, whose module docstring states both).

An action is 0 (host nothing) or a (start, count) span, count ascending then start ascending:
``Discrete(1 + B(B+1)/2)`` with B = ``config["max_blocks"]`` (:func:`encode_span` /
:func:`decode_span`).  :func:`coverage_ok` is the necessary condition that the blocks left uncovered
can still be covered by the servers still to come.  Moved here from ``distllm_env.envs.placement``,
which still re-exports every name.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np



def num_span_actions(max_blocks: int) -> int:
    """1 (host nothing) + every (start, count ≥ 1) with start + count ≤ max_blocks."""
    return 1 + max_blocks * (max_blocks + 1) // 2


def encode_span(start: int, count: int, max_blocks: int) -> int:
    """Action index of hosting blocks start … start+count−1 (0-based); count 0 → 0.

    index = 1 + Σ_{c'<count} (B − c' + 1) + start = 1 + (count−1)(B+1) − (count−1)·count/2 + start.

    Raises:
        ValueError: the span does not fit (``count`` not in 1 … B or ``start`` > B − ``count``)."""
    B = int(max_blocks)
    if count == 0:
        return 0
    if not (1 <= count <= B and 0 <= start <= B - count):
        raise ValueError(f"span start={start}, count={count} does not fit max_blocks={B}")
    c = count - 1
    return 1 + c * (B + 1) - c * count // 2 + start


@lru_cache(maxsize=8)
def span_tables(max_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, counts)`` of every action index (read-only arrays)."""
    B = int(max_blocks)
    starts, counts = [0], [0]
    for c in range(1, B + 1):
        starts.extend(range(0, B - c + 1))
        counts.extend([c] * (B - c + 1))
    s, n = np.array(starts, dtype=np.int64), np.array(counts, dtype=np.int64)
    s.flags.writeable = False
    n.flags.writeable = False
    return s, n


def decode_span(action: int, max_blocks: int) -> tuple[int, int]:
    """``(start, count)`` of an action index (inverse of :func:`encode_span`).

    Raises:
        ValueError: ``action`` is outside the action space."""
    s, n = span_tables(max_blocks)
    if not 0 <= action < len(s):
        raise ValueError(f"action {action} is outside 0..{len(s) - 1}")
    return int(s[action]), int(n[action])


@lru_cache(maxsize=8)
def _model_spans(num_blocks: int, max_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """For an L-block model: the action indices with start + count ≤ L (ascending, so those with
    count ≤ c form a prefix) and their complement windows ``outside[a, b] = b ∉ span(a)``."""
    s, n = span_tables(max_blocks)
    idx = np.flatnonzero(s + n <= num_blocks)
    b = np.arange(num_blocks)
    outside = ~((b[None, :] >= s[idx, None]) & (b[None, :] < (s[idx] + n[idx])[:, None]))
    idx.flags.writeable = False
    outside.flags.writeable = False
    return idx, outside


def coverage_ok(uncovered: np.ndarray, later_caps: np.ndarray) -> np.ndarray:
    """The necessary coverage conditions of :mod:`distllm_env.envs.placement` (its module
    docstring), vectorised over rows.

    ``uncovered`` is (A, L) bool: the blocks still uncovered after each candidate span;
    ``later_caps`` the largest valid counts m̄ of the servers still to come.  Row a passes iff its
    uncovered set is empty, or both

    * (capacity) Σ m̄ ≥ hull − (sum of the r − 1 largest covered runs strictly inside the hull), and
    * (integrality) r intervals all of the largest length max m̄, laid left to right each at the
      first block still uncovered, cover it — exact when every later server has the same m̄ (the
      leftmost greedy is optimal for equal lengths), and necessary in general since shortening an
      interval never helps."""
    A, L = uncovered.shape
    r = len(later_caps)
    any_ = uncovered.any(axis=1)
    if r == 0 or not any_.any():
        return ~any_
    b = np.arange(L)
    first = np.argmax(uncovered, axis=1)
    last = L - 1 - np.argmax(uncovered[:, ::-1], axis=1)
    hull = last - first + 1
    cuts = r - 1
    if cuts > 0:
        prev = np.maximum.accumulate(np.where(uncovered, b, -1), axis=1)
        prev_before = np.concatenate([np.full((A, 1), -1), prev[:, :-1]], axis=1)
        runs = np.where(uncovered & (prev_before >= 0), b - prev_before - 1, 0)
        top = runs.sum(axis=1) if cuts >= L else np.partition(runs, L - cuts, axis=1)[:, L - cuts:].sum(axis=1)
        need = hull - top
    else:
        need = hull
    ok = ~any_ | (int(np.sum(later_caps)) >= need)
    # integrality: leftmost greedy with r intervals of length c = max m̄
    c = int(np.max(later_caps))
    if c <= 0:
        return ok & ~any_
    # next_unc[a, x] = first uncovered block ≥ x in row a (L if none), for x in 0..L
    nxt = np.where(uncovered, b, L)
    next_unc = np.concatenate([np.minimum.accumulate(nxt[:, ::-1], axis=1)[:, ::-1], np.full((A, 1), L)], axis=1)
    rows = np.arange(A)
    pos = np.where(any_, first, L)
    for _ in range(min(r, L // c + 1)):
        pos = next_unc[rows, np.minimum(pos + c, L)]
        if not (pos < L).any():
            break
    return ok & (pos >= L)


__all__ = ["coverage_ok", "decode_span", "encode_span", "num_span_actions", "span_tables"]

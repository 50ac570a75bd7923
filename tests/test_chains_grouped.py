"""The grouped shortest path (ChainDAG._shortest_grouped, used when a cost has no edge_extra_s)
returns exactly the chain and cost of the edge-by-edge DP, ties and infinite weights included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from distllm_env.chains import ChainDAG, HopCost
from distllm_env.errors import NoFeasibleChain
from distllm_env.placement import Placement


def _edge_dp(dag: ChainDAG, cost: HopCost):
    """The edge DP of ChainDAG.shortest: a zero edge_extra_s adds +0.0 to every weight (exact)."""
    return dag.shortest(HopCost(cost.fixed_s, cost.per_block_s, np.zeros(dag.num_edges), cost.sink_s))


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30), L=st.integers(2, 12), cb=st.integers(0, 3),
       integer=st.booleans(), sink=st.booleans(), infs=st.booleans())
def test_grouped_equals_edge_dp(seed, n, L, cb, integer, sink, infs):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, L + 1, n)
    starts = np.array([rng.integers(0, L - c + 1) if c else 0 for c in counts])
    placement = Placement(tuple(int(x) for x in starts), tuple(int(x) for x in counts), L)
    cb = min(cb, L - 1)
    dag = ChainDAG(placement, cb)
    if integer:          # small integers: many exactly equal-cost chains (tie-breaking)
        fixed, per = rng.integers(0, 3, n).astype(float), rng.integers(0, 2, n).astype(float)
    else:                # decimals: sums that round differently along different chains
        fixed, per = np.round(rng.random(n), 1), np.round(rng.random(n) * 0.3, 1)
    if infs:
        fixed[rng.random(n) < 0.2] = np.inf
    cost = HopCost(fixed, per, sink_s=np.full(n, 1e-3) if sink else None)
    try:
        expected = _edge_dp(dag, cost)
    except NoFeasibleChain:
        with pytest.raises(NoFeasibleChain):
            dag.shortest(cost)
        return
    route, total = dag.shortest(cost)
    assert (route, total) == expected


def test_grouped_hand_computed_tie():
    """Blocks 0-3; s0 hosts 0-1, s1 hosts 0-3, s2 hosts 2-3, s3 hosts 1-3.  Unit fixed cost, zero
    per-block cost: s1 alone costs 1, every two-hop chain 2; the DP keeps s1."""
    placement = Placement((0, 0, 2, 1), (2, 4, 2, 3), 4)
    dag = ChainDAG(placement)
    cost = HopCost(np.ones(4), np.zeros(4))
    route, total = dag.shortest(cost)
    assert route.servers == (1,) and total == 1.0
    # s1 down (infinite fixed cost): s0 → s2 and s0 → s3 tie at 2; the first in DAG order (s2, lower
    # index among nodes ending at block 4... both end at 4, s2 sorts first) wins, as in the edge DP
    cost = HopCost(np.array([1.0, np.inf, 1.0, 1.0]), np.zeros(4))
    route, total = dag.shortest(cost)
    assert route.servers == (0, 2) and total == 2.0
    assert (route, total) == _edge_dp(dag, cost)


class _MaskView:
    """The two ClusterView methods the shortest router's reuse cache calls, on a settable placement."""

    def __init__(self, fixed, per, sink=None, ties="lowest-index"):
        self.fixed, self.per, self.sink, self.ties, self.placement = fixed, per, sink, ties, None
        self.searches = 0

    def decode_cost(self, client):
        return HopCost(self.fixed, self.per, sink_s=self.sink)

    def feasible_dag(self, client, client_blocks=0):
        self.searches += 1
        return ChainDAG(self.placement, client_blocks, ties=self.ties)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 25), L=st.integers(2, 10), integer=st.booleans(),
       cb=st.integers(0, 2), sink=st.booleans(), ties=st.sampled_from(ChainDAG.TIE_RULES))
def test_reused_shortest_equals_fresh_search(seed, n, L, integer, cb, sink, ties):
    """Under a sequence of up/down masks and block moves (churn, online re-placement), the shortest
    router's reuse cache returns exactly the chain a fresh search on each placement returns, under
    either tie rule, with a client split and sink costs."""
    from distllm_env.baselines.simple import _ReusedShortest

    rng = np.random.default_rng(seed)
    cb = min(cb, L - 1)
    counts = rng.integers(1, L + 1, n)
    starts = np.array([rng.integers(0, L - c + 1) for c in counts])
    if integer:
        fixed, per = rng.integers(0, 3, n).astype(float), rng.integers(0, 2, n).astype(float)
    else:
        fixed, per = np.round(rng.random(n), 1), np.round(rng.random(n) * 0.3, 1)
    view = _MaskView(fixed, per, np.round(rng.random(n), 1) if sink else None, ties)
    cache = _ReusedShortest(view, 0, cb)
    up = np.ones(n, dtype=bool)
    for _ in range(30):
        flip = rng.random(n) < 0.15
        up ^= flip
        for j in np.flatnonzero(rng.random(n) < 0.1):      # online re-placements move servers
            starts[j] = rng.integers(0, L - counts[j] + 1)
        placement = Placement(tuple(int(x) for x in starts), tuple(int(c) if u else 0 for c, u in zip(counts, up)), L)
        view.placement = placement
        try:
            expected = ChainDAG(placement, cb, ties=ties).shortest(view.decode_cost(0))[0]
        except NoFeasibleChain:
            with pytest.raises(NoFeasibleChain):
                cache.get(placement)
            continue
        assert cache.get(placement) == expected


def test_reused_shortest_skips_search_for_dearer_joins():
    """Blocks 0-3, unit per-block cost.  s0 hosts 0-3 with fixed cost 1 (chain cost 5).  s1 (0-1) and
    s2 (2-3) join with fixed cost 2: s1 → s2 costs 8 > 5, so no search is made; then s3 joins on
    0-3 with fixed cost 0 (chain cost 4 < 5): a search, and the answer moves to s3.  s0 down: search."""
    from distllm_env.baselines.simple import _ReusedShortest

    fixed, per = np.array([1.0, 2.0, 2.0, 0.0]), np.ones(4)
    view = _MaskView(fixed, per)

    def at(counts):
        view.placement = Placement((0, 0, 2, 0), counts, 4)
        return cache.get(view.placement).servers

    cache = _ReusedShortest(view, 0, 0)
    assert at((4, 0, 0, 0)) == (0,) and view.searches == 1
    assert at((4, 2, 2, 0)) == (0,) and view.searches == 1       # s1, s2 up: no search
    assert at((4, 2, 0, 0)) == (0,) and view.searches == 1       # s2 down again: none either
    assert at((4, 2, 2, 4)) == (3,) and view.searches == 2       # s3 is cheaper: searched
    assert at((0, 2, 2, 4)) == (3,) and view.searches == 2       # s0 (off the chain) down: reused
    assert at((0, 2, 2, 0)) == (1, 2) and view.searches == 3     # s3 (on the chain) down: searched


def _plain_end_costs(placement: Placement, cost: HopCost, cb: int):
    """D and B by a plain relaxation over block ends, hop by hop from the placement (no ChainDAG)."""
    L = placement.num_blocks
    D, B = np.full(L + 1, np.inf), np.full(L + 1, np.inf)
    D[cb], B[L] = 0.0, 0.0
    hops = [(j, s, s + c) for j, (s, c) in enumerate(zip(placement.starts, placement.counts)) if c]
    for q in range(cb, L):                      # ends in increasing order: D[q] is final here
        for j, s, e in hops:
            if s <= q < e:
                D[e] = min(D[e], D[q] + cost.fixed_s[j] + cost.per_block_s[j] * (e - q))
    for q in range(L - 1, cb - 1, -1):          # B[e] for e > q is final here
        for j, s, e in hops:
            if s <= q < e:
                tail = (cost.sink_s[j] if cost.sink_s is not None else 0.0) if e == L else B[e]
                B[q] = min(B[q], cost.fixed_s[j] + cost.per_block_s[j] * (e - q) + tail)
    return D, B


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 12), L=st.integers(2, 8), cb=st.integers(0, 2),
       sink=st.booleans())
def test_end_costs_equal_plain_relaxation(seed, n, L, cb, sink):
    """ChainDAG.end_costs_s's D (client source → end e) and B (end e → sink, sink costs included)
    equal a plain hop-by-hop relaxation over block ends, and B[cb] is shortest()'s cost (up to
    summation order)."""
    rng = np.random.default_rng(seed)
    cb = min(cb, L - 1)
    counts = rng.integers(0, L + 1, n)
    starts = np.array([rng.integers(0, L - c + 1) if c else 0 for c in counts])
    placement = Placement(tuple(int(x) for x in starts), tuple(int(x) for x in counts), L)
    dag = ChainDAG(placement, cb)
    cost = HopCost(np.round(rng.random(n), 2), np.round(rng.random(n), 2),
                   sink_s=np.round(rng.random(n), 2) if sink else None)
    D, B = dag.end_costs_s(cost)
    pD, pB = _plain_end_costs(placement, cost, cb)
    np.testing.assert_allclose(D, pD, rtol=1e-12)
    np.testing.assert_allclose(B, pB, rtol=1e-12)
    try:
        _, total = dag.shortest(cost)
    except NoFeasibleChain:
        assert B[cb] == np.inf
        return
    assert B[cb] == pytest.approx(total, rel=1e-12)

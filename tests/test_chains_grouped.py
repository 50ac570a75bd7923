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

    def __init__(self, fixed, per):
        self.fixed, self.per, self.placement = fixed, per, None

    def decode_cost(self, client):
        return HopCost(self.fixed, self.per)

    def shortest(self, client, cost, client_blocks=0):
        return ChainDAG(self.placement, client_blocks).shortest(cost)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 25), L=st.integers(2, 10), integer=st.booleans())
def test_reused_shortest_equals_fresh_search(seed, n, L, integer):
    """Under a sequence of up/down masks and occasional block moves (churn), the shortest router's
    reuse cache returns exactly the chain a fresh search on each placement returns."""
    from distllm_env.baselines.simple import _ReusedShortest

    rng = np.random.default_rng(seed)
    counts = rng.integers(1, L + 1, n)
    starts = np.array([rng.integers(0, L - c + 1) for c in counts])
    if integer:
        fixed, per = rng.integers(0, 3, n).astype(float), rng.integers(0, 2, n).astype(float)
    else:
        fixed, per = np.round(rng.random(n), 1), np.round(rng.random(n) * 0.3, 1)
    view = _MaskView(fixed, per)
    cache = _ReusedShortest(view, 0, 0)
    up = np.ones(n, dtype=bool)
    for _ in range(30):
        flip = rng.random(n) < 0.15
        up ^= flip
        if rng.random() < 0.1:                       # an online re-placement moves one server
            j = int(rng.integers(0, n))
            starts[j] = rng.integers(0, L - counts[j] + 1)
        placement = Placement(tuple(int(x) for x in starts), tuple(int(c) if u else 0 for c, u in zip(counts, up)), L)
        view.placement = placement
        try:
            expected = ChainDAG(placement).shortest(view.decode_cost(0))[0]
        except NoFeasibleChain:
            with pytest.raises(NoFeasibleChain):
                cache.get(placement)
            continue
        assert cache.get(placement) == expected

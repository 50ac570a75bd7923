"""The grouped shortest-path DP of the chain DAG (docs/model.md §3, Lemma 1; docs/architecture.md).

:class:`GroupedDPMixin` holds the methods of :class:`~distllm_env.chains.ChainDAG` that work on block
ends rather than on edges: every edge into node k from a predecessor ending at block e' weighs
``fixed_s[j] + per_block_s[j]·(end_k − e')``, the same for every predecessor with that end, so the DP
needs only the least distance per end (O(Σ m_j) instead of O(edges)): ``_shortest_grouped`` (the
``lowest-index`` :meth:`~distllm_env.chains.ChainDAG.shortest` without ``edge_extra_s``),
``end_costs_s`` and ``through_cost_s``.  Split out of chains.py (same code, no behaviour change).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .chains import ChainDAG, HopCost, Route


class _GroupedPred:
    """Lazy predecessors for :meth:`ChainDAG._shortest_grouped`: ``pred[k]`` is the source of the
    first edge into node k, in DAG order (predecessors by ascending end, then node order), whose
    ``dist[src] + w`` equals ``dist[k]`` — the edge the edge-by-edge DP keeps."""

    def __init__(self, dag: "ChainDAG", dist: list[float], D: list[float], fixed: list[float], per: list[float]):
        self.dag, self.dist, self.D, self.fixed, self.per = dag, dist, D, fixed, per

    def __getitem__(self, k: int) -> int:
        dag, dist, D = self.dag, self.dist, self.D
        e, f, p, target = dag._ends_list[k], self.fixed[k], self.per[k], dist[k]
        cb = dag.client_blocks
        for q in range(max(dag._starts_list[k], cb), e):
            w = f + p * (e - q)
            if D[q] + w != target:
                continue
            if q == cb:
                return dag.n              # the client source (its edge comes first)
            ends = dag._ends_list
            u = int(np.searchsorted(dag.ends, q, side="left"))
            while u < dag.n and ends[u] == q:
                if dist[u] + w == target:
                    return u
                u += 1
        raise AssertionError(f"no predecessor reaches node {k}'s distance")  # pragma: no cover


class GroupedDPMixin:
    """Grouped DP of :class:`~distllm_env.chains.ChainDAG` (a mixin: it relies on the DAG's node
    arrays, ``_ends_list`` / ``_starts_list`` and ``_best_sink``)."""

    def _shortest_grouped(self, cost: HopCost) -> tuple[Route, float] | None:
        """:meth:`shortest` under ``lowest-index`` ties for edge weights without ``edge_extra_s``,
        without the edge arrays: every edge into node k from a predecessor (or the source) ending at
        block e' weighs ``fixed_s[j] + per_block_s[j]·(end_k − e')``, the same for every predecessor
        with that end, so node k needs only ``D[e']``, the least distance of the nodes ending at e'
        (O(Σ m_j) instead of O(edges)).  The predecessor on the returned chain is the first edge in
        DAG order that reaches node k's distance — the DP of :meth:`shortest` with the same float
        additions, so the route and cost are identical.  ``None`` (use the edge DP) when a weight is
        NaN."""
        srv = self.servers
        fixed_a, per_a = cost.fixed_s[srv], cost.per_block_s[srv]
        if np.isnan(fixed_a).any() or np.isnan(per_a).any():
            return None
        dist_a, D_a = self._forward_grouped(fixed_a, per_a)
        dist, D = dist_a.tolist(), D_a.tolist()
        return self._best_sink(dist, _GroupedPred(self, dist, D, fixed_a.tolist(), per_a.tolist()), cost,
                               order_key=None)

    @cached_property
    def _grouped_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple]]:
        """The (node, q) pairs of :meth:`_forward_grouped`: every node k paired with each block end
        q in ``[max(start_k, client_blocks), end_k)`` it can be entered from, in node order.  Returns
        (node per pair, q per pair, ``end_k − q`` per pair, and per distinct end e in ascending order
        ``(e, first pair, past-last pair, first node, past-last node, pair offsets of those nodes
        relative to the first pair)``)."""
        n, cb = self.n, self.client_blocks
        lo = np.maximum(self.starts, cb)
        lens = self.ends - lo
        off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lens, out=off[1:])
        total = int(off[-1])
        node = np.repeat(np.arange(n, dtype=np.int64), lens)
        q = np.arange(total, dtype=np.int64) + np.repeat(lo - off[:-1], lens)
        span = np.repeat(self.ends, lens) - q
        groups = []
        if n:
            first = np.flatnonzero(np.diff(self.ends, prepend=-1)).tolist() + [n]
            ends, offl = self._ends_list, off.tolist()
            for k0, k1 in zip(first[:-1], first[1:]):
                groups.append((ends[k0], offl[k0], offl[k1], k0, k1, off[k0:k1] - off[k0]))
        return node, q, span, groups

    def _forward_grouped(self, fixed: np.ndarray, per: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per node, the least cost from the client source (``dist``, shape (n,)), and per block end
        e the least ``dist`` of the nodes ending there (``D``, shape (L+1,), the source at
        ``client_blocks``); ``fixed``/``per`` are indexed by node.  Nodes with the same end depend only
        on ``D`` at smaller ends, so each end is one vectorised step; every candidate is
        ``D[q] + (fixed_k + per_k·(end_k − q))``, the same float operations as the edge-by-edge DP,
        and a NaN candidate never wins (a node without a finite candidate gets ``inf``)."""
        node, q, span, groups = self._grouped_pairs
        inf = np.inf
        D = np.full(self.placement.num_blocks + 1, inf)
        D[self.client_blocks] = 0.0           # the client source; no node ends at or before cb
        dist = np.full(self.n, inf)
        w = fixed[node] + per[node] * span
        fmin_at, fmin = np.fmin.reduceat, np.fmin.reduce
        for e, a, b, k0, k1, rel in groups:
            m = fmin_at(D[q[a:b]] + w[a:b], rel)
            dist[k0:k1] = m
            best = fmin(m)
            if best < D[e]:
                D[e] = best
        nan = np.isnan(dist)
        if nan.any():
            dist[nan] = inf
        return dist, D

    def end_costs_s(self, cost: HopCost) -> tuple[np.ndarray, np.ndarray]:
        """Per block end e (0 … L), the least cost (s) of a partial chain from the client source to
        end e (``D``; ``D[client_blocks] = 0``) and from end e to the sink, ``cost.sink_s`` included
        (``B``; ``B[L] = 0``); ``inf`` where no such partial chain exists or e < ``client_blocks``.
        Shapes (L+1,) each.  A NaN weight never wins; ``cost.edge_extra_s`` is not supported
        (ValueError).  ``B`` is summed in another order than :meth:`shortest`, so compare with a
        relative margin.  Used as lower bounds by the shortest router's reuse under churn."""
        if cost.edge_extra_s is not None:
            raise ValueError("end_costs_s takes costs without edge_extra_s")
        srv = self.servers
        fixed, per = cost.fixed_s[srv], cost.per_block_s[srv]
        _, D = self._forward_grouped(fixed, per)
        node, q, span, groups = self._grouped_pairs
        L = self.placement.num_blocks
        B = np.full(L + 1, np.inf)
        B[L] = 0.0
        w = fixed[node] + per[node] * span
        sink = cost.sink_s[srv] if cost.sink_s is not None else None
        for e, a, b, _k0, _k1, _rel in reversed(groups):   # B[e] is final once every end > e is done
            back = (sink[node[a:b]] if sink is not None else 0.0) if e == L else B[e]
            np.fmin.at(B, q[a:b], w[a:b] + back)
        return D, B

    def through_cost_s(self, cost: HopCost) -> np.ndarray:
        """Shape (num_servers,): the least cost (s) of a complete chain through each server (``inf``
        for a server that is not a node, or on no finite chain); ``cost.edge_extra_s`` is not
        supported (ValueError).  Sums are taken in another order than :meth:`shortest`'s, so compare
        with a relative margin."""
        if cost.edge_extra_s is not None:
            raise ValueError("through_cost_s takes costs without edge_extra_s")
        srv = self.servers
        fixed_a, per_a = cost.fixed_s[srv], cost.per_block_s[srv]
        dist, _ = self._forward_grouped(fixed_a, per_a)
        L = self.placement.num_blocks
        back = np.full(self.n, np.inf)            # least cost from the end of node k to the sink
        if cost.sink_s is not None:
            back[self.to_sink] = cost.sink_s[srv[self.to_sink]]
        else:
            back[self.to_sink] = 0.0
        for e in sorted(set(self._ends_list) - {L}, reverse=True):
            nxt = (self.starts <= e) & (e < self.ends)
            if nxt.any():
                with np.errstate(invalid="ignore"):
                    vals = fixed_a[nxt] + per_a[nxt] * (self.ends[nxt] - e) + back[nxt]
                back[self.ends == e] = np.nanmin(vals) if not np.isnan(vals).all() else np.inf
        out = np.full(self.placement.num_servers, np.inf)
        out[srv] = np.asarray(dist) + back
        return out


__all__ = ["GroupedDPMixin"]

"""Routes, route feasibility (Lemma 1) and the block-ordered chain DAG (docs/model.md §3).

A *chain* is the ordered list of servers a session visits.  Each block is processed at the first
server on the chain that hosts it and a server always runs up to its own last block, so after server
i, server j processes ``m_ij = (a_j + m_j) − (a_i + m_i)`` blocks.  **Lemma 1**: a chain is feasible
iff for every hop (i, j): ``a_j ≤ a_i + m_i ≤ a_j + m_j − 1`` — the next block needed after i is hosted
by j.  The client acts as a dummy source whose "end" is the number of blocks it runs itself
(0 without a client split) and as a dummy sink at block L.

Because every feasible hop strictly increases the end ``a + m``, servers sorted by end form a DAG in
topological order, and the predecessors of server j are exactly the servers whose end lies in
``[a_j, a_j + m_j)`` — a contiguous run of that order.  Shortest and K-cheapest chains are dynamic
programmes over this order; no general graph search is needed.  This module is the only place that
decides feasibility and m_ij; the DP over block ends (``ChainDAG._shortest_grouped``, ``end_costs_s``,
``through_cost_s``) is in :mod:`~distllm_env.chains_grouped`, mixed into :class:`ChainDAG`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from .chains_grouped import GroupedDPMixin
from .errors import NoFeasibleChain, RouteError
from .placement import Placement


@dataclass(frozen=True)
class Hop:
    """One server of a route and the inclusive 0-based block range it processes."""

    server: int
    first_block: int
    last_block: int

    @property
    def blocks(self) -> int:
        """m_ij: number of blocks processed on this hop."""
        return self.last_block - self.first_block + 1


@dataclass(frozen=True)
class Route:
    """The chain of servers a session uses, with the blocks each one processes."""

    hops: tuple[Hop, ...]

    @property
    def servers(self) -> tuple[int, ...]:
        return tuple(h.server for h in self.hops)

    @property
    def blocks(self) -> tuple[int, ...]:
        return tuple(h.blocks for h in self.hops)

    def __len__(self) -> int:
        return len(self.hops)

    def to_text(self) -> str:
        """CSV form of docs/contracts.md §6: ``s3:0-40|s7:41-69``."""
        return "|".join(f"s{h.server}:{h.first_block}-{h.last_block}" for h in self.hops)

    def to_json(self) -> list[dict]:
        return [{"server": h.server, "first_block": h.first_block, "last_block": h.last_block} for h in self.hops]


def hop_feasible(start_i_end: int, start_j: int, end_j: int) -> bool:
    """Lemma 1 for one hop, 0-based with exclusive ends: a_j ≤ end_i ≤ a_j + m_j − 1."""
    return start_j <= start_i_end < end_j


def route_from_chain(placement: Placement, servers: Sequence[int], client_blocks: int = 0) -> Route:
    """Build the :class:`Route` of a chain of servers, checking Lemma 1 on every hop.

    ``client_blocks`` blocks (0 … client_blocks−1) run on the client (dummy source end).  Raises
    :class:`RouteError` naming the first infeasible hop, or when the chain does not reach block L−1.
    """
    L = placement.num_blocks
    if not 0 <= client_blocks <= L:
        raise RouteError(f"client_blocks must be in 0..{L}, got {client_blocks}")
    hops, prev_end = [], client_blocks
    for pos, j in enumerate(servers):
        j = int(j)
        if not 0 <= j < placement.num_servers:
            raise RouteError(f"hop {pos}: server {j} does not exist (placement has {placement.num_servers})")
        s, c = placement.starts[j], placement.counts[j]
        if c == 0 or not hop_feasible(prev_end, s, s + c):
            hosted = f"hosts blocks {s}-{s + c - 1}" if c else "hosts no blocks"
            raise RouteError(f"hop {pos}: server {j} {hosted} but the next block needed is {prev_end} (Lemma 1)")
        hops.append(Hop(j, prev_end, s + c - 1))
        prev_end = s + c
    if prev_end != L:
        raise RouteError(f"chain ends after block {prev_end - 1}; it must reach the last block {L - 1}")
    if not hops and client_blocks != L:
        raise RouteError("empty chain")
    return Route(tuple(hops))


def check_route(placement: Placement, route: Route, client_blocks: int = 0) -> None:
    """Raise :class:`RouteError` unless ``route`` is exactly the feasible route of its server chain."""
    expected = route_from_chain(placement, route.servers, client_blocks)
    if expected.hops != route.hops:
        raise RouteError(f"route {route.to_text()} does not follow the m_ij convention; expected "
                         f"{expected.to_text()}")


@dataclass(frozen=True)
class HopCost:
    """Edge weights on the chain DAG.

    The weight of the edge into server j that processes m blocks is
    ``fixed_s[j] + per_block_s[j] · m + edge_extra_s[e]``; leaving the last server j for the sink
    costs ``sink_s[j]``.  ``edge_extra_s`` (indexed like :attr:`ChainDAG.edge_dst`) carries
    edge-specific terms such as WS-RR's waiting time or PETALS' server-to-server RTT.
    """

    fixed_s: np.ndarray
    per_block_s: np.ndarray
    edge_extra_s: np.ndarray | None = None
    sink_s: np.ndarray | None = None


class ChainDAG(GroupedDPMixin):
    """The block-ordered DAG of feasible hops under a placement (client-independent structure).

    Nodes are the servers that host blocks beyond ``client_blocks``, sorted by exclusive end.
    Node k's incoming edges are ``edge_ptr[k] … edge_ptr[k+1]−1``; ``edge_src`` holds the node index
    of the predecessor, or ``n`` (one past the last node) for the client source.  ``edge_blocks`` is
    m_ij of each edge.  Node k can leave to the sink iff ``to_sink[k]``.
    """

    #: tie rules of :meth:`shortest` (docs/fidelity.md "Fidelity modes", reading 4)
    TIE_RULES = ("lowest-index", "first-finalised")

    def __init__(self, placement: Placement, client_blocks: int = 0, ties: str = "lowest-index"):
        """Build the DAG of every Lemma-1-feasible chain under ``placement`` when the client
        runs the first ``client_blocks`` blocks.  ``ties`` picks :meth:`shortest`'s rule between
        exactly equal-cost chains: ``lowest-index`` (the first minimum in DAG order) or
        ``first-finalised`` (the published simulator's Dijkstra, see :meth:`shortest`).

        Raises:
            ValueError: ``client_blocks`` is not in ``0 … L−1``, or an unknown ``ties``."""
        L = placement.num_blocks
        if not 0 <= client_blocks < L:
            raise ValueError(f"client_blocks must be in 0..{L - 1} for a server chain, got {client_blocks}")
        if ties not in self.TIE_RULES:
            raise ValueError(f"ties must be one of {list(self.TIE_RULES)}, got {ties!r}")
        self.ties = ties
        self.placement = placement
        self.client_blocks = client_blocks
        ends = placement.end_array
        starts = placement.start_array
        usable = np.flatnonzero((placement.count_array > 0) & (ends > client_blocks))
        order = usable[np.argsort(ends[usable], kind="stable")]
        self.servers = order                      # node k -> server index
        self.ends = ends[order]
        self.starts = starts[order]
        n = len(order)
        self.n = n
        self.from_source = (self.starts <= client_blocks) & (client_blocks < self.ends)
        self.to_sink = self.ends == L
        # the edge arrays are built on first use (:meth:`_edges`): the grouped shortest path
        # (:meth:`_shortest_grouped`) never needs them, and churn builds a DAG per live-server set

    def _edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(edge_ptr, edge_src, edge_dst, edge_blocks), built once."""
        cached = self.__dict__.get("_edge_arrays")
        if cached is not None:
            return cached
        n, client_blocks, from_source = self.n, self.client_blocks, self.from_source
        lo = np.searchsorted(self.ends, self.starts, side="left")
        hi = np.searchsorted(self.ends, self.ends, side="left")
        counts = (hi - lo) + from_source.astype(np.int64)
        ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        total = int(ptr[-1])
        src = np.empty(total, dtype=np.int64)
        dst = np.repeat(np.arange(n, dtype=np.int64), counts)
        # fill: the source edge first (if any), then predecessors lo..hi-1
        for k in range(n):
            a = ptr[k]
            if from_source[k]:
                src[a] = n
                a += 1
            src[a: ptr[k + 1]] = np.arange(lo[k], hi[k])
        src_end = np.where(src == n, client_blocks, self.ends[np.minimum(src, max(n - 1, 0))] if n else 0)
        blocks = self.ends[dst] - src_end if n else np.zeros(0, dtype=np.int64)
        cached = self.__dict__["_edge_arrays"] = (ptr, src, dst, blocks)
        return cached

    @property
    def edge_ptr(self) -> np.ndarray:
        """Node k's incoming edges are ``edge_ptr[k] … edge_ptr[k+1]−1``; shape (n+1,)."""
        return self._edges()[0]

    @property
    def edge_src(self) -> np.ndarray:
        """Predecessor node of each edge, ``n`` for the client source; shape (num_edges,)."""
        return self._edges()[1]

    @property
    def edge_dst(self) -> np.ndarray:
        """Destination node of each edge; shape (num_edges,)."""
        return self._edges()[2]

    @property
    def edge_blocks(self) -> np.ndarray:
        """m_ij of each edge (blocks processed at the destination); shape (num_edges,)."""
        return self._edges()[3]

    @property
    def num_edges(self) -> int:
        return int(self.edge_ptr[-1])

    @cached_property
    def edge_dst_server(self) -> np.ndarray:
        """Server index of each edge's destination."""
        return self.servers[self.edge_dst]

    @cached_property
    def edge_src_server(self) -> np.ndarray:
        """Server index of each edge's source, −1 for the client."""
        return np.where(self.edge_src == self.n, -1, self.servers[np.minimum(self.edge_src, max(self.n - 1, 0))])

    def edge_weights(self, cost: HopCost) -> np.ndarray:
        dst = self.edge_dst_server
        w = cost.fixed_s[dst] + cost.per_block_s[dst] * self.edge_blocks
        if cost.edge_extra_s is not None:
            w = w + cost.edge_extra_s
        return w

    def _route_from_nodes(self, nodes: list[int]) -> Route:
        hops, prev_end = [], self.client_blocks
        for k in nodes:
            end = int(self.ends[k])
            hops.append(Hop(int(self.servers[k]), prev_end, end - 1))
            prev_end = end
        return Route(tuple(hops))

    def shortest(self, cost: HopCost) -> tuple[Route, float]:
        """The cheapest chain and its cost.  Raises :class:`NoFeasibleChain` if none exists.

        Exactly equal costs: under ``ties="lowest-index"`` each node keeps its first minimal incoming
        edge in DAG order, and the first minimal last hop wins.  Under ``"first-finalised"`` each node
        (and the sink) keeps the predecessor a Dijkstra with strict ``<`` relaxation finalises first:
        the one of smallest distance, then of lowest server index (the client first) — the published
        simulator's Dijkstra, whose ``min`` returns the first of equal distances (docs/fidelity.md)."""
        if self.ties == "first-finalised":
            return self._shortest_first_finalised(cost)
        if cost.edge_extra_s is None:
            fast = self._shortest_grouped(cost)
            if fast is not None:
                return fast
        # The DP runs over Python lists: with tens of nodes and hundreds of edges this is several
        # times faster than per-node numpy slicing, and it performs the same float additions and the
        # same first-minimum tie-breaking as np.argmin, so results are identical.
        n = self.n
        w = self.edge_weights(cost).tolist()
        ptr, src = self._ptr_list, self._src_list
        inf = float("inf")
        dist = [inf] * (n + 1)
        dist[n] = 0.0
        pred = [-1] * n
        for k in range(n):
            best, arg = inf, -1
            for e in range(ptr[k], ptr[k + 1]):
                d = dist[src[e]] + w[e]
                if d < best:
                    best, arg = d, e
            if arg >= 0:
                dist[k] = best
                pred[k] = src[arg]
        return self._best_sink(dist, pred, cost, order_key=None)

    def _shortest_first_finalised(self, cost: HopCost) -> tuple[Route, float]:
        n = self.n
        w = self.edge_weights(cost).tolist()
        ptr, src = self._ptr_list, self._src_list
        order_key = self._server_list + [-1]        # a node's server index; the client source is −1
        inf = float("inf")
        dist = [inf] * (n + 1)
        dist[n] = 0.0
        pred = [-1] * n
        for k in range(n):
            best, arg = inf, -1
            for e in range(ptr[k], ptr[k + 1]):
                u = src[e]
                d = dist[u] + w[e]
                if d < best or (d == best and arg >= 0 and
                                (dist[u], order_key[u]) < (dist[src[arg]], order_key[src[arg]])):
                    best, arg = d, e
            if arg >= 0:
                dist[k] = best
                pred[k] = src[arg]
        return self._best_sink(dist, pred, cost, order_key=order_key)

    def _best_sink(self, dist: list[float], pred: list[int], cost: HopCost,
                   order_key: list[int] | None) -> tuple[Route, float]:
        """The cheapest complete chain from the DP's distances and predecessors: the first minimal
        last hop (``order_key=None``), or the one a strict-``<`` Dijkstra finalises first (smallest
        distance, then ``order_key``).  Raises :class:`NoFeasibleChain` if no finite chain exists."""
        sinks = np.flatnonzero(self.to_sink)
        if len(sinks) == 0:
            raise NoFeasibleChain(self._why_infeasible())
        if order_key is None:
            total = np.asarray(dist)[sinks] + (cost.sink_s[self.servers[sinks]] if cost.sink_s is not None else 0.0)
            i = int(np.argmin(total))
        else:
            sink_s = cost.sink_s[self.servers[sinks]] if cost.sink_s is not None else np.zeros(len(sinks))
            total = (np.asarray(dist)[sinks] + sink_s).tolist()
            i = min(range(len(sinks)), key=lambda q: (total[q], dist[int(sinks[q])], order_key[int(sinks[q])]))
        if not np.isfinite(total[i]):
            raise NoFeasibleChain(self._why_infeasible())
        nodes, k = [], int(sinks[i])
        while k != self.n:
            nodes.append(k)
            k = pred[k]
        return self._route_from_nodes(nodes[::-1]), float(total[i])

    @cached_property
    def _ends_list(self) -> list[int]:
        return self.ends.tolist()

    @cached_property
    def _starts_list(self) -> list[int]:
        return self.starts.tolist()

    @cached_property
    def _ptr_list(self) -> list[int]:
        return self.edge_ptr.tolist()

    @cached_property
    def _src_list(self) -> list[int]:
        return self.edge_src.tolist()

    @cached_property
    def _server_list(self) -> list[int]:
        return self.servers.tolist()

    @cached_property
    def _max_in_blocks(self) -> list[int]:
        """Per node, the largest m_ij over its incoming edges (−1 for a node without any)."""
        ptr, blocks = self._ptr_list, self.edge_blocks.tolist()
        return [max(blocks[ptr[k]:ptr[k + 1]], default=-1) for k in range(self.n)]

    def k_cheapest(self, cost: HopCost, K: int) -> list[tuple[Route, float]]:
        """Up to K distinct chains of lowest cost, cheapest first (ties broken by DAG order).

        A K-best dynamic programme over the block-ordered DAG: each node keeps its K cheapest
        partial chains, built from its predecessors' lists.

        Raises:
            ValueError: ``K`` ≤ 0.
            NoFeasibleChain: no chain reaches the last block, or every chain has an infinite cost."""
        if K <= 0:
            raise ValueError(f"K must be positive, got {K}")
        n = self.n
        w = self.edge_weights(cost)
        best = np.full((n + 1, K), np.inf)
        best[n, 0] = 0.0
        back_src = np.full((n, K), -1, dtype=np.int64)
        back_rank = np.full((n, K), -1, dtype=np.int64)
        ptr, src = self.edge_ptr, self.edge_src
        for k in range(n):
            a, b = ptr[k], ptr[k + 1]
            if a == b:
                continue
            cand = (best[src[a:b]] + w[a:b, None]).ravel()
            take = min(K, cand.size)
            idx = np.argsort(cand, kind="stable")[:take]
            best[k, :take] = cand[idx]
            back_src[k, :take] = src[a + idx // K]
            back_rank[k, :take] = idx % K
        sinks = np.flatnonzero(self.to_sink)
        if len(sinks) == 0:
            raise NoFeasibleChain(self._why_infeasible())
        sink_cost = cost.sink_s[self.servers[sinks]] if cost.sink_s is not None else np.zeros(len(sinks))
        cand = (best[sinks] + sink_cost[:, None]).ravel()
        idx = np.argsort(cand, kind="stable")[:K]
        out = []
        for flat in idx:
            if not np.isfinite(cand[flat]):
                break
            k, r = int(sinks[flat // K]), int(flat % K)
            nodes = []
            while k != n:
                nodes.append(k)
                k, r = int(back_src[k, r]), int(back_rank[k, r])
            out.append((self._route_from_nodes(nodes[::-1]), float(cand[flat])))
        if not out:
            raise NoFeasibleChain(self._why_infeasible())
        return out

    def all_chains(self, limit: int = 100_000) -> list[Route]:
        """Every feasible chain (depth-first; for tests and tiny instances).  Raises ValueError past
        ``limit`` chains."""
        n = self.n
        succ: list[list[int]] = [[] for _ in range(n + 1)]
        for e in range(self.num_edges):
            succ[int(self.edge_src[e])].append(int(self.edge_dst[e]))
        out: list[Route] = []

        def walk(node: int, path: list[int]):
            if node != n and self.to_sink[node]:
                out.append(self._route_from_nodes(path))
                if len(out) > limit:
                    raise ValueError(f"more than {limit} feasible chains")
            for nxt in succ[node]:
                path.append(nxt)
                walk(nxt, path)
                path.pop()

        walk(n, [])
        return out

    def _why_infeasible(self) -> str:
        gaps = self.placement.uncovered_ranges(self.client_blocks)
        if gaps:
            text = ", ".join(f"{a}-{b}" for a, b in gaps)
            return f"no feasible chain: blocks {text} are not hosted by any server"
        return "no feasible chain under the given edge costs (every chain has infinite cost)"


__all__ = ["ChainDAG", "Hop", "HopCost", "Route", "check_route", "hop_feasible", "route_from_chain"]

"""Trivial reference policies: the floor every learned or published policy must clear.

* ``even`` placement: every server takes the conservative block count of CG-BP's step 1 for
  ``sessions`` concurrent sessions (default 8), and servers tile the blocks in index order,
  wrapping around, so any placement whose counts sum to ≥ L covers the model;
* ``random`` placement: the same counts at uniformly random starts (redrawn until the blocks are
  covered, at most ``max_tries`` times);
* ``shortest`` routing: the chain of least static decode cost Σ(t_cj + τ_j·m_ij) (CG-BPRR step 3);
* ``random`` routing: the cheapest chain under i.i.d. uniform random edge weights;
* ``round-robin`` routing: cycles over the ``k`` chains of least static decode cost.
"""

from __future__ import annotations

import numpy as np

from distllm_env.chains import HopCost, Route
from distllm_env.errors import PlacementError
from distllm_env.instance import Instance
from distllm_env.perf import conservative_block_count
from distllm_env.placement import Placement, PlacementResult
from distllm_env.policy_options import check_int
from distllm_env.view import ClusterView
from distllm_env.workload import Request


def _conservative_counts(instance: Instance, sessions: int) -> np.ndarray:
    return conservative_block_count(instance.memory_bytes, instance.block_bytes, instance.kv_block_bytes,
                                    sessions, instance.num_blocks, instance.max_blocks)


class EvenPlacement:
    name = "even"
    family = "default"

    def __init__(self, sessions: int = 8):
        self.sessions = check_int(self.name, "sessions", sessions, 1)

    def place(self, instance: Instance, rng: np.random.Generator) -> PlacementResult:
        L = instance.num_blocks
        counts = _conservative_counts(instance, self.sessions)
        starts, cursor = [], 0
        for c in counts:
            c = int(c)
            if c == 0:
                starts.append(0)
                continue
            start = cursor if cursor + c <= L else L - c
            starts.append(start)
            cursor = (start + c) % L
        placement = Placement(tuple(starts), tuple(int(c) for c in counts), L)
        placement.check_covered()
        return PlacementResult(placement, diagnostics={"sessions": self.sessions})


class RandomPlacement:
    name = "random"
    family = "default"

    def __init__(self, sessions: int = 8, max_tries: int = 1000):
        self.sessions = check_int(self.name, "sessions", sessions, 1)
        self.max_tries = check_int(self.name, "max_tries", max_tries, 1)

    def place(self, instance: Instance, rng: np.random.Generator) -> PlacementResult:
        """A random placement that covers every block (re-drawn up to ``max_tries`` times).

        Raises:
            PlacementError: no draw covers the model (names the uncovered blocks)."""
        L = instance.num_blocks
        counts = [int(c) for c in _conservative_counts(instance, self.sessions)]
        last = None
        for attempt in range(self.max_tries):
            starts = tuple(int(rng.integers(0, L - c + 1)) if c > 0 else 0 for c in counts)
            last = Placement(starts, tuple(counts), L)
            if not last.uncovered_ranges():
                return PlacementResult(last, diagnostics={"sessions": self.sessions, "attempts": attempt + 1})
        last.check_covered()  # raises, naming the blocks the last draw left uncovered
        raise PlacementError("random placement failed")  # pragma: no cover


class _StaticChainCache:
    """Caches per (client, client_blocks) chains for one simulation (static costs do not change)."""

    def __init__(self):
        self._view = None
        self._placement = None
        self._cache: dict = {}

    def get(self, view: ClusterView, key, compute):
        if view is not self._view or view.placement is not self._placement:   # churn masks servers
            self._view, self._placement, self._cache = view, view.placement, {}
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


class _ReusedShortest:
    """The static shortest chain of one (client, client_blocks) across placements that differ only in
    which servers are up and where they sit (churn, online re-placement), recomputed only when the new
    placement could change it.

    Let R (cost C) be the chain search's answer on the placement P_0 of the last search.  On a new
    placement P_new it is still the answer, with the same cost and the same tie-breaking (either tie
    rule of :class:`distllm_env.chains.ChainDAG`), when (1) every server of R is up in P_new on the
    same blocks as in P_0, and (2) every chain of P_new through a *new* node — a server up in P_new on
    blocks it did not hold up in P_0 — costs more than C: the other nodes of P_new are nodes of P_0,
    and removing nodes off R neither lowers a distance nor adds a tie, while a node on chains dearer
    than C can neither reach a distance on R nor tie with C.  (2) is checked with a lower bound, so a
    failed check only means a fresh search: with the per-end costs ``D`` (source to end e) and ``B``
    (end e to the sink) of P_0 (``ChainDAG.end_costs_s``), the new nodes are relaxed in order of
    their ends: entering node x at block end q costs at least ``R[q] + fixed_x + per_x·(end_x − q)``
    (``R`` starts as ``D``), leaving it for the sink through old nodes at least ``B[end_x]``, and
    between two new nodes old nodes cost at least ``max(0, D[q] − D[end_x])`` (for otherwise P_0 had
    a cheaper way to q).  The bound needs non-negative, non-NaN weights (else every placement change
    searches afresh) and is compared with C plus a 1e-9 relative margin for summation order."""

    def __init__(self, view: ClusterView, client: int, client_blocks: int):
        self.view, self.client, self.client_blocks = view, client, client_blocks
        self.cost = view.decode_cost(client)
        cost = self.cost
        terms = [cost.fixed_s, cost.per_block_s] + ([cost.sink_s] if cost.sink_s is not None else [])
        with np.errstate(invalid="ignore"):
            self.reusable = all(not np.isnan(t).any() and bool((t >= 0).all()) for t in terms)
        self.placement = self.route = None
        self.total_s, self.servers = 0.0, None
        self.dag = self.base_starts = self.base_counts = self.end_costs = None

    def get(self, placement) -> Route:
        if placement is self.placement:
            return self.route
        if self.route is not None and self.reusable and self._still_best(placement):
            self.placement = placement
            return self.route
        self.route = self.placement = None     # a search that raises NoFeasibleChain leaves nothing to reuse
        dag = self.view.feasible_dag(self.client, self.client_blocks)
        route, total = dag.shortest(self.cost)
        self.placement, self.route, self.total_s = placement, route, total
        self.servers = np.asarray(route.servers, dtype=np.int64)
        self.dag, self.base_starts, self.base_counts = dag, placement.start_array, placement.count_array
        self.end_costs = None                  # D and B of this placement, computed when first needed
        return route

    def _still_best(self, placement) -> bool:
        """Conditions (1) and (2) of the class docstring for ``placement``."""
        starts, counts = placement.start_array, placement.count_array
        r, b_starts, b_counts = self.servers, self.base_starts, self.base_counts
        if (counts[r] != b_counts[r]).any() or (starts[r] != b_starts[r]).any():
            return False                       # a server of R went down or moved (its count was > 0)
        new = np.flatnonzero((counts > 0) & ((counts != b_counts) | (starts != b_starts)))
        if len(new) == 0:
            return True
        cb, L = self.client_blocks, placement.num_blocks
        ends = starts[new] + counts[new]
        new, ends = new[ends > cb], ends[ends > cb]          # a node that ends on the client is never used
        if len(new) == 0:
            return True
        if self.end_costs is None:
            self.end_costs = self.dag.end_costs_s(self.cost)
        D, B = self.end_costs
        fixed, per, sink = self.cost.fixed_s, self.cost.per_block_s, self.cost.sink_s
        margin = self.total_s + 1e-9 * abs(self.total_s)
        # Quick test first.  Along a chain, B falls by at most the weight of an old hop (P_0 holds it),
        # so a chain whose first new node is x costs at least D[q] + w_x(q) + B[end_x] (x's
        # through-cost over old nodes) plus, for every later new node y, min(0, slack_y), where
        # slack_y = min_q (w_y(q) + B[end_y] − B[q]) (how much y shortens the way to the sink).
        lo = np.maximum(starts[new], cb)
        lens = ends - lo
        off = np.cumsum(lens) - lens
        pair = np.repeat(np.arange(len(new)), lens)
        q = np.arange(int(lens.sum())) + np.repeat(lo - off, lens)
        w = fixed[new][pair] + per[new][pair] * (ends[pair] - q)
        tail = B[ends]
        if sink is not None:
            tail = np.where(ends == L, sink[new], tail)
        with np.errstate(invalid="ignore"):
            through = np.minimum.reduceat(D[q] + w, off) + tail
            slack = np.minimum.reduceat(w + tail[pair] - B[q], off)
            shortcut = float(np.minimum(slack, 0.0).sum())
            if bool((through + shortcut > margin).all()):
                return True
        order = np.argsort(ends, kind="stable")
        R = D.copy()
        with np.errstate(invalid="ignore"):
            for x, e in zip(new[order].tolist(), ends[order].tolist()):
                lo = max(int(starts[x]), cb)
                H = float((R[lo:e] + (fixed[x] + per[x] * np.arange(e - lo, 0, -1))).min())
                if not H <= margin:
                    continue                   # every chain through x costs more than C
                if e == L:
                    if H + (float(sink[x]) if sink is not None else 0.0) <= margin:
                        return False
                    continue
                if H + B[e] <= margin:
                    return False
                np.minimum(R[e:], H + np.fmax(D[e:] - D[e], 0.0), out=R[e:])
        return True


class ShortestRouter:
    name = "shortest"
    family = "default"

    def __init__(self):
        self._view = None
        self._chains: dict[tuple[int, int], _ReusedShortest] = {}

    def route(self, request: Request, view: ClusterView, rng: np.random.Generator) -> Route:
        if view is not self._view:
            self._view, self._chains = view, {}
        key = (request.client, request.client_blocks)
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = _ReusedShortest(view, request.client, request.client_blocks)
        return chain.get(view.placement)


class RandomRouter:
    name = "random"
    family = "default"

    def route(self, request: Request, view: ClusterView, rng: np.random.Generator) -> Route:
        """A uniformly random-weighted chain among those whose hops the client reaches.  Raises
        :class:`~distllm_env.errors.NoFeasibleChain` if there is none."""
        dag = view.feasible_dag(request.client, request.client_blocks)
        zeros = np.zeros(view.num_servers)
        extra = rng.random(dag.num_edges)
        unreachable = view.unreachable_edge_cost_s(request.client, dag)   # only chains the client reaches
        if unreachable is not None:
            extra = extra + unreachable
        cost = HopCost(fixed_s=zeros, per_block_s=zeros, edge_extra_s=extra)
        return dag.shortest(cost)[0]


class RoundRobinRouter:
    name = "round-robin"
    family = "default"

    def __init__(self, k: int = 4):
        self.k = check_int(self.name, "k", k, 1)
        self._cache = _StaticChainCache()

    def route(self, request: Request, view: ClusterView, rng: np.random.Generator) -> Route:
        key = (request.client, request.client_blocks)
        chains = self._cache.get(view, key, lambda: [r for r, _ in view.k_cheapest(
            request.client, self.k, view.decode_cost(request.client), request.client_blocks)])
        turns = self._cache.get(view, "turns", dict)
        turn = turns.get(key, 0)
        turns[key] = turn + 1
        return chains[turn % len(chains)]

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

from distllm_env.chains import ChainDAG, HopCost, Route
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
    which servers are up (churn), recomputed only when the new placement could change it.

    The cached chain R (cost C) was the DP's answer on placement P_old.  On P_new it is still the
    DP's answer, with the same cost and the same tie-breaking, when (1) every server of R is up in
    P_new at the same blocks, and (2) every server up in P_new but not in P_old has a through-cost
    bound > C (with a 1e-9 relative margin for summation order): removing a server off R only raises
    other chains' costs, and a chain through an added server costs more than C, so no edge or sink
    the DP compares changes from ">" to "≤".  The bound is :meth:`ChainDAG.through_cost_s` on the
    union U of every up server seen at its current blocks (U ⊇ P_new, so the bound holds); a server
    seen at new blocks (online re-placement) rebuilds U and recomputes."""

    def __init__(self, view: ClusterView, client: int, client_blocks: int):
        self.view, self.client, self.client_blocks = view, client, client_blocks
        self.cost = view.decode_cost(client)
        self.placement = None
        self.u_starts = self.u_counts = self.bound_s = self.live = None
        self.route, self.total_s, self.servers = None, 0.0, None

    def get(self, placement) -> Route:
        if placement is self.placement:
            return self.route
        starts, counts = placement.start_array, placement.count_array
        live = counts > 0
        if self.u_starts is None or np.any(live & ((starts != self.u_starts) | (counts != self.u_counts))):
            if self.u_starts is None:
                self.u_starts, self.u_counts = starts.copy(), counts.copy()
            else:
                self.u_starts, self.u_counts = self.u_starts.copy(), self.u_counts.copy()
                self.u_starts[live], self.u_counts[live] = starts[live], counts[live]
            self.bound_s = None        # computed when first needed (never without churn)
        elif self.route is not None and live[self.servers].all():
            added = live & ~self.live
            if added.any() and self.bound_s is None:
                union = Placement(tuple(self.u_starts.tolist()), tuple(self.u_counts.tolist()), placement.num_blocks)
                self.bound_s = ChainDAG(union, self.client_blocks).through_cost_s(self.cost)
            margin = self.total_s + 1e-9 * abs(self.total_s)
            if not added.any() or bool((self.bound_s[added] > margin).all()):
                self.placement, self.live = placement, live
                return self.route
        self.route = self.placement = None     # a search that raises NoFeasibleChain leaves nothing to reuse
        route, total = self.view.shortest(self.client, self.cost, self.client_blocks)
        self.placement, self.live, self.route, self.total_s = placement, live, route, total
        self.servers = np.asarray(route.servers, dtype=np.int64)
        return route


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

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


class ShortestRouter:
    name = "shortest"
    family = "default"

    def __init__(self):
        self._cache = _StaticChainCache()

    def route(self, request: Request, view: ClusterView, rng: np.random.Generator) -> Route:
        key = (request.client, request.client_blocks)
        return self._cache.get(view, key, lambda: view.shortest(
            request.client, view.decode_cost(request.client), request.client_blocks)[0])


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

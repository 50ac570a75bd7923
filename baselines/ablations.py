"""The ablation baselines of arXiv 2512.21884 (docs/model.md §8 "Ablation
baselines", §8.5; the authors' ``General_varying_*_online.m``, ``Petals_online.m``,
``Petals_online_hacking.m``, ``Petals_optimized_routing.m``).  Each changes one ingredient of PETALS
to the proposed method's:

* :class:`OptimizedOrderPlacement` (``opt-order``): PETALS placement (its block counts, its
  weakest-window rule, fixed KV pool), but servers join in CG-BP's increasing-t̃ order;
* :class:`OptimizedNumberPlacement` (``opt-number``): PETALS' weakest-window rule and random join
  order, but with CG-BP's conservative block counts m_j and the KV cache taken from leftover memory;
* :class:`OptimizedRouter` (``opt-rr``): per-request optimal ("myopic") routing — the chain minimising
  Σ_edges w_ij + max_edges t^W_ij, with w_ij the full prefill-aware static cost — solved exactly and
  combinatorially instead of by the published per-request MILP.

All three belong to the ``petals`` allocation-delay family (docs/contracts.md §4).
"""

from __future__ import annotations

import numpy as np

from distllm_env.chains import ChainDAG, HopCost, Route
from distllm_env.errors import NoFeasibleChain
from distllm_env.instance import Instance
from distllm_env.offline import OfflineProblem
from distllm_env.placement import CachePolicy, PlacementResult
from distllm_env.view import ClusterView
from distllm_env.workload import Request

from .cg_bp import CGBPSessionsOptions, conservative_counts, tilde_order
from .petals import PetalsPlacement, petals_counts
from .ws_rr import WSRRRouter


class OptimizedOrderPlacement(CGBPSessionsOptions, PetalsPlacement):
    """``opt-order``: PETALS placement with servers joining in CG-BP's increasing-t̃ order
    (``General_varying_*_online.m`` passes CG-BP's ``optimized_order`` to ``Petals_online.m``).

    Options: CG-BP's ``sessions`` (default ``"auto"``, the |R| rule), ``arrival_rate_per_s``,
    ``allocation_delay_s``, and PETALS' ``rebalance``, ``balance_quality``, ``attn_cache_tokens``."""

    name = "opt-order"
    family = "petals"

    def __init__(self, sessions: int | str = "auto", arrival_rate_per_s: float | None = None,
                 allocation_delay_s: float | None = None, rebalance: bool = False, balance_quality: float = 0.75,
                 attn_cache_tokens: int | None = None, max_rounds: int = 100):
        PetalsPlacement.__init__(self, rebalance, balance_quality, attn_cache_tokens, max_rounds)
        self._init_sessions(sessions, arrival_rate_per_s, allocation_delay_s)

    def place(self, instance: Instance, rng: np.random.Generator) -> PlacementResult:
        R, diag = self._sessions(instance)
        _, t_tilde, order = tilde_order(OfflineProblem.from_instance(instance, 1), R)
        diag["t_tilde_s"] = [float(x) for x in t_tilde]
        counts = petals_counts(instance, self.attn_cache_tokens)
        return self._place_with(instance, rng, [int(j) for j in order], counts, self.cache_policy(instance), diag)


class OptimizedNumberPlacement(CGBPSessionsOptions, PetalsPlacement):
    """``opt-number``: PETALS' weakest-window rule and random join order with CG-BP's block counts
    m_j = min(⌊M_j/(s_m + s_c·|R|)⌋, L, cap) and the KV cache from leftover memory
    (``Petals_online_hacking.m``).  The join order is the first draw of the policy stream, the same
    permutation :class:`PetalsPlacement` draws for the seed (the published scripts reuse PETALS'
    ``randperm`` order)."""

    name = "opt-number"
    family = "petals"

    def __init__(self, sessions: int | str = "auto", arrival_rate_per_s: float | None = None,
                 allocation_delay_s: float | None = None, rebalance: bool = False, balance_quality: float = 0.75,
                 max_rounds: int = 100):
        PetalsPlacement.__init__(self, rebalance, balance_quality, None, max_rounds)
        self._init_sessions(sessions, arrival_rate_per_s, allocation_delay_s)

    def place(self, instance: Instance, rng: np.random.Generator) -> PlacementResult:
        order = [int(j) for j in rng.permutation(instance.num_servers)]
        R, diag = self._sessions(instance)
        counts = [int(c) for c in conservative_counts(instance, R)]
        return self._place_with(instance, rng, order, counts, CachePolicy(), diag)


def min_sum_plus_max_wait(dag: ChainDAG, static: HopCost, wait: np.ndarray, sink_s: np.ndarray | None = None
                          ) -> tuple[Route, float, float]:
    """Solve min over chains p of Σ_{e∈p} w_e + max_{e∈p} t^W_e exactly (``inf`` waits = unusable
    edges), with w_e from ``static`` and the sink costs ``sink_s``.

    For every distinct finite waiting value θ in ascending order: the cheapest chain using only
    edges with t^W_e ≤ θ, valued at its cost + θ; the best value over θ is the optimum (the optimal
    chain p* is feasible at θ = max_{e∈p*} t^W_e and valued there at most at its objective; every
    value is at least the objective of the chain it belongs to).  Stops once θ plus the cheapest
    chain over all usable edges can no longer improve on the best value.

    Returns (route, objective, θ of the winning threshold).

    Raises:
        NoFeasibleChain: no chain's servers will ever have room for the request."""
    finite = np.isfinite(wait)
    blocked = np.where(finite, 0.0, np.inf)
    try:
        _, lower = dag.shortest(HopCost(static.fixed_s, static.per_block_s, blocked, sink_s))
    except NoFeasibleChain:
        raise NoFeasibleChain("no chain whose servers will ever have room for this request") from None
    best_route, best, best_theta = None, np.inf, np.nan
    for theta in np.unique(wait[finite]):
        if theta + lower >= best:
            break
        extra = np.where(wait <= theta, 0.0, np.inf)
        try:
            route, cost = dag.shortest(HopCost(static.fixed_s, static.per_block_s, extra, sink_s))
        except NoFeasibleChain:
            continue
        if cost + theta < best:
            best_route, best, best_theta = route, cost + theta, float(theta)
    return best_route, float(best), best_theta


class OptimizedRouter(WSRRRouter):
    """``opt-rr``: per-request optimal routing of the published ``Petals_optimized_routing.m``.

    The published code solves, per arrival, the MILP min Σ_(i,j) f_ij·w_ij + t^W subject to
    t^W ≥ t^W_ij·f_ij and unit flow conservation from the client to its sink, with w_ij the full
    prefill-aware static cost of the edge ([t^I_cj + (l−1)·t_cj] + [τ^I_j + (l−1)·τ_j]·m_ij) and a
    δ = 1 ms last hop.  At an optimum t^W equals the largest waiting time on the chosen chain, so
    this is min over chains of Σw + max t^W — the same optimisation problem, solved here exactly by
    :func:`min_sum_plus_max_wait` (thresholds on t^W + shortest paths) instead of a MILP.

    Waiting times are the core's t^W_ij(now) (:meth:`ClusterView.waiting_time_s`).  If no chain
    will ever have room, the statically cheapest chain is returned and the simulator records the
    request as rejected (``insufficient_memory``)."""

    name = "opt-rr"
    family = "petals"

    def route(self, request: Request, view: ClusterView, rng: np.random.Generator) -> Route:
        dag = view.feasible_dag(request.client, request.client_blocks)
        static = self._static_cost(view, request)
        wait = view.waiting_time_s(request, dag)
        try:
            return min_sum_plus_max_wait(dag, static, wait, self._sink)[0]
        except NoFeasibleChain:
            return self._statically_cheapest(dag, static)


__all__ = ["OptimizedNumberPlacement", "OptimizedOrderPlacement", "OptimizedRouter", "min_sum_plus_max_wait"]

"""WS-RR: Waiting-penalized Shortest-path Request Routing (arXiv 2512.21884 Algorithm 2, small time
scale; docs/model.md §7; the authors' ``WS_RR.m``).

For each arriving request r of client c with prompt l_in and output l, the edge (i, j) of the chain
DAG — j processes m_ij blocks after i — costs

    t^W_ij(now) + [t^I_cj(l_in) + (l − 1)·t_cj] + [τ^I_j(l_in) + (l − 1)·τ_j]·m_ij

(waiting time until j has room for r's m_ij blocks of KV cache, plus the prefill-aware service time
of the hop), the hop into the client sink costs a tiny constant (the published δ = 1 ms), and r takes
the cheapest chain.  Summing the waits along the chain instead of taking their maximum is what
turns the per-request optimal routing (:class:`~distllm_env.baselines.ablations.OptimizedRouter`)
into a shortest path; by Corollary 2 the chain's cost bounds r's completion time.

The published code handles one client; this router works for any number of clients (each request
uses its own client's costs) and honours ``request.client_blocks`` (split inference: the chain starts
after the blocks the client runs).  Waiting times and static costs come from the core
(:meth:`ClusterView.waiting_time_s`, :meth:`ClusterView.static_cost`), the search from
:meth:`ChainDAG.shortest`.
"""

from __future__ import annotations

import numpy as np

from distllm_env.chains import HopCost, Route
from distllm_env.errors import NoFeasibleChain
from distllm_env.view import ClusterView
from distllm_env.workload import Request

from .petals import _check_number

#: The "tiny positive cost on the last hop": the published code uses δ = 1 ms because its Dijkstra
#: reads a zero weight as "no link" (``WS_RR.m``).  Every chain has exactly one last hop, so it never
#: changes which chain is cheapest.
LAST_HOP_S = 1e-3


class WSRRRouter:
    """WS-RR (``ws-rr``, family ``proposed``).

    Option ``last_hop_s`` (default 1 ms) is the constant sink-edge cost.  When every chain has an
    infinite waiting time (the request can never fit), WS-RR returns the chain of least static cost
    and the simulator records the request as rejected for ``insufficient_memory``.  A server the
    request's client cannot reach has an infinite static cost (:meth:`ClusterView.static_cost`), so
    no chain through it is ever chosen; with no reachable chain at all ``route`` raises
    :class:`~distllm_env.errors.NoFeasibleChain` (recorded ``no_feasible_chain``)."""

    name = "ws-rr"
    family = "proposed"

    def __init__(self, last_hop_s: float = LAST_HOP_S):
        self.last_hop_s = _check_number(self.name, "last_hop_s", last_hop_s, minimum=0.0)
        self._view = None
        self._sink: np.ndarray | None = None
        self._static: dict = {}

    def _static_cost(self, view: ClusterView, request: Request) -> HopCost:
        """:meth:`ClusterView.static_cost`, memoised per (client, prompt, output) for one simulation."""
        if view is not self._view:
            self._view, self._static = view, {}
            self._sink = np.full(view.num_servers, self.last_hop_s)
        key = (request.client, request.prompt_tokens, request.output_tokens)
        cost = self._static.get(key)
        if cost is None:
            cost = self._static[key] = view.static_cost(request)
        return cost

    def route(self, request: Request, view: ClusterView, rng: np.random.Generator) -> Route:
        dag = view.feasible_dag(request.client, request.client_blocks)
        static = self._static_cost(view, request)
        wait = view.waiting_time_s(request, dag)
        cost = HopCost(static.fixed_s, static.per_block_s, edge_extra_s=wait, sink_s=self._sink)
        try:
            return dag.shortest(cost)[0]
        except NoFeasibleChain:
            return self._statically_cheapest(dag, static)

    def _statically_cheapest(self, dag, static: HopCost) -> Route:
        """Every chain waits forever: hand the statically cheapest one to the simulator, which records
        the request as rejected (insufficient_memory); with no chain at all this raises
        NoFeasibleChain again."""
        return dag.shortest(HopCost(static.fixed_s, static.per_block_s, sink_s=self._sink))[0]


__all__ = ["LAST_HOP_S", "WSRRRouter"]

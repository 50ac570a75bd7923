"""WS-RR-load: WS-RR whose per-hop cost adds the expected server contention (issue 11, item 5;
docs/baselines.md "WS-RR-load"; docs/model.md §7 and §11).

WS-RR (:mod:`.ws_rr`, arXiv 2512.21884 Algorithm 2) prices the hop into server j for request r as
t^W_ij + [t^I_cj + (l − 1)·t_cj] + [τ^I_j + (l − 1)·τ_j]·m_ij: a session's speed never depends on who
else uses j, which is exact under ``simulator.server_model: independent`` (docs/model.md §4.4) but
blind under the contended models of docs/model.md §11, where static routing piles every client onto
the largest spans while other GPUs idle.  This router adds, per edge (i, j) with m = m_ij blocks on j
and n_j = :meth:`ClusterView.active_sessions` (sessions holding a span on j now):

* ``serial`` (one step at a time, FIFO across sessions): each of r's l steps on j waits for about one
  step of each of the n_j other sessions, and each of theirs waits for r's, so the hop gets
  ``weight · l · n_j · m·τ_j`` — the "active sessions on the hop × its step time" rule of issue 11
  item 5 (the step of another session is estimated by r's own m·τ_j) — plus the backlog now queued on
  j, ``queued_work_s(j)``, met once by r's first step.
* ``batched`` (continuous batching, docs/model.md §11): r's step runs in a batch of n_j + 1 whose
  iteration takes the roofline max(τ_j·H_j, (n_j + 1)·m·F_tok/F_j) (H_j = blocks hosted on j, the
  weight read of an iteration touching the whole span; F_tok = FLOPs per token per block; F_j = the
  GPU's dense bf16 peak), so for n_j ≥ 1 each step costs
  ``weight · l · [max(τ_j·H_j, (n_j + 1)·m·F_tok/F_j) − m·τ_j]`` more than WS-RR's m·τ_j (0 for n_j
  = 0), plus ``queued_work_s(j)`` once.
* ``independent``: nothing is added, so ``ws-rr-load`` routes exactly as ``ws-rr`` (tested: identical
  records on ``paper-clustered``).

All terms are in seconds and ≥ 0; the search is WS-RR's shortest path on the chain DAG
(:meth:`ChainDAG.shortest`), with WS-RR's fallback when every chain waits forever.
"""

from __future__ import annotations

import numpy as np

from distllm_env.chains import HopCost, Route
from distllm_env.errors import NoFeasibleChain
from distllm_env.perf import batched_iteration_time_s, decode_flops_time_s, hop_compute_s
from distllm_env.policy_options import check_number
from distllm_env.view import ClusterView
from distllm_env.workload import Request

from .ws_rr import LAST_HOP_S, WSRRRouter


def _server_model(view: ClusterView) -> str:
    """``simulator.server_model`` of the scenario the view simulates (``independent`` if unset)."""
    scenario = getattr(view.instance, "scenario", None)
    return str(getattr(getattr(scenario, "simulator", None), "server_model", "independent"))


class WSRRLoadRouter(WSRRRouter):
    """WS-RR with a contention term per hop (``ws-rr-load``, family ``proposed``; module docstring).

    Options: ``last_hop_s`` (default 1 ms, as ``ws-rr``) and ``weight`` (≥ 0, default 1): the factor
    on the contention term (0 routes exactly as ``ws-rr``).  Bad values raise :class:`ScenarioError`
    at ``policy_defaults.options.ws-rr-load.<option>``."""

    name = "ws-rr-load"
    family = "proposed"

    def __init__(self, last_hop_s: float = LAST_HOP_S, weight: float = 1.0):
        super().__init__(last_hop_s=last_hop_s)
        self.weight = check_number(self.name, "weight", weight, minimum=0.0)
        self._model_view = None
        self._model = "independent"
        self._span: np.ndarray | None = None
        self._flop_s_per_block: np.ndarray | None = None

    # -- the contention term -----------------------------------------------------------------------
    def _prepare(self, view: ClusterView) -> str:
        """Per-simulation constants: server model, hosted blocks H_j, F_tok/F_j (s per token·block)."""
        if view is not self._model_view:
            self._model_view, self._model = view, _server_model(view)
            self._span = np.asarray(view.placement.count_array, dtype=float)
            if self._model == "batched":
                inst = view.instance
                peak = np.array([float(s.gpu.dense_bf16_flops) for s in inst.servers])
                self._flop_s_per_block = decode_flops_time_s(1.0, float(inst.model.flops_per_token_per_block), peak)
        return self._model

    def contention_s(self, request: Request, view: ClusterView, dag) -> np.ndarray:
        """Expected extra time (s) of ``request`` per edge of ``dag`` (shape (dag.num_edges,)) from the
        sessions now on each edge's server (module docstring); zeros under ``independent``."""
        model = self._prepare(view)
        if model == "independent" or self.weight == 0.0 or dag.num_edges == 0:
            return np.zeros(dag.num_edges)
        n_srv = view.num_servers
        active = np.array([view.active_sessions(j) for j in range(n_srv)], dtype=float)
        queued = np.array([view.queued_work_s(j) for j in range(n_srv)], dtype=float)
        dst = dag.edge_dst_server
        m = dag.edge_blocks.astype(float)
        tau = view.tau_decode_s[dst]
        n = active[dst]
        steps = float(request.output_tokens)          # prefill + (l − 1) decode steps
        own = hop_compute_s(tau, m)                   # the request's own step, m·τ_j
        if model == "serial":
            per_step = n * own
        else:                                         # batched: roofline of a batch of n + 1
            batch = batched_iteration_time_s(hop_compute_s(tau, self._span[dst]),
                                             (n + 1.0) * m * self._flop_s_per_block[dst])
            per_step = np.where(n > 0, np.maximum(batch - own, 0.0), 0.0)
        return self.weight * (steps * per_step + queued[dst])

    def route(self, request: Request, view: ClusterView, rng: np.random.Generator) -> Route:
        if self._prepare(view) == "independent":
            return super().route(request, view, rng)
        dag = view.feasible_dag(request.client, request.client_blocks)
        static = self._static_cost(view, request)
        extra = view.waiting_time_s(request, dag) + self.contention_s(request, view, dag)
        cost = HopCost(static.fixed_s, static.per_block_s, edge_extra_s=extra, sink_s=self._sink)
        try:
            return dag.shortest(cost)[0]
        except NoFeasibleChain:
            return self._statically_cheapest(dag, static)


__all__ = ["WSRRLoadRouter"]

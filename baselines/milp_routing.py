"""The routing-only ILP (19) of arXiv 2512.21884 and the ``rr-ilp`` router, solved with HiGHS.

:func:`solve_routing_ilp` routes a fixed set of concurrent requests under a fixed placement
(docs/milp.md, "Routing-only ILP (19)"; the authors' ``RR_ILP_general.m``): integer per-client flows
on the edges of the placement's chain DAG (:class:`~distllm_env.chains.ChainDAG`), decode cost
t_cj + τ_j·m_ij per token and unit (:func:`distllm_env.perf.decode_hop_cost_s`, arXiv 2512.21884
eq. (13a)), KV memory per server, flows decomposed into one chain per request.
:class:`RoutingILPRouter` (``rr-ilp``, family ``default``) uses (19) online, one request at a time.

This module depends on :mod:`.milp_highs` and :mod:`.milp_common` only, so both the BPRR solver
(:mod:`.milp_bprr`) and its local search (:mod:`.milp_heuristic`) can use it without an import cycle.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from distllm_env.chains import ChainDAG, HopCost, Route, route_from_chain
from distllm_env.errors import NoFeasibleChain, ScenarioError, SolverTimeout
from distllm_env.offline import OfflineProblem
from distllm_env.perf import decode_hop_cost_s
from distllm_env.placement import Placement
from distllm_env.view import ClusterView
from distllm_env.workload import Request

from .milp_common import INF, check_problem, option_error, rel_gap
from .milp_highs import MIPModel
from .milp_result import Certificate

ROUTING_METHODS = ("dag", "ilp")


@dataclass
class RoutingSolution(Certificate):
    """Routes of the routing-only ILP (19) under a fixed placement, with their certificate."""

    node_count: int = 0


def solve_routing_ilp(problem: OfflineProblem, placement: Placement, time_limit_s: float | None = 60.0,
                      mip_rel_gap: float = 1e-4, capacity_bytes: Sequence[int] | None = None,
                      kv_block_bytes: int | None = None, client_blocks: int = 0,
                      strict: bool = False, deadline: float | None = None,
                      random_seed: int = 0) -> RoutingSolution:
    """The routing-only ILP (19) (arXiv 2512.21884 eq. (19), the authors' ``RR_ILP_general.m``): integer
    per-client flows x^c_e ∈ [0, n_c] on the edges of the placement's feasible chain DAG (the core's
    :class:`~distllm_env.chains.ChainDAG`), cost l_max·(t_cj + τ_j·m_ij) per unit, KV memory
    Σ_c Σ_{e into j} s_c·m_e·x^c_e ≤ M_j − s_m·m_j (or ``capacity_bytes[j]`` if given), flow
    conservation with supply n_c; the flows are decomposed into one chain per request.

    ``deadline`` (a ``time.perf_counter()`` instant) also bounds HiGHS's run; HiGHS runs with one
    thread and ``random_seed`` (deterministic unless a time limit stops it).

    Raises :class:`NoFeasibleChain` if a client has no chain or the chains cannot hold all requests'
    KV caches, :class:`SolverTimeout` if no solution is found in time (or, with ``strict``, if the
    solution is not proven optimal), ScenarioError (path ``placement`` / ``capacity_bytes`` /
    ``problem.<field>``) for inconsistent arguments."""
    t0 = time.perf_counter()
    check_problem(problem)
    if placement.num_servers != problem.num_servers or placement.num_blocks != problem.num_blocks:
        raise ScenarioError("placement", f"expected {problem.num_servers} servers / {problem.num_blocks} blocks "
                                         f"(the problem's), got {placement.num_servers} / {placement.num_blocks}")
    dag = ChainDAG(placement, client_blocks)
    s_c = int(problem.kv_block_bytes if kv_block_bytes is None else kv_block_bytes)
    if capacity_bytes is None:
        cap = problem.memory_bytes - int(problem.block_bytes) * placement.count_array
    else:
        cap = np.asarray(capacity_bytes, dtype=np.int64)
        if cap.shape != (problem.num_servers,):
            raise ScenarioError("capacity_bytes", f"expected one entry per server ({problem.num_servers}), got "
                                                  f"shape {cap.shape}")
    slots = np.maximum(cap, 0) // s_c
    m = MIPModel()
    E = dag.num_edges
    dst = dag.edge_dst_server
    blocks = dag.edge_blocks
    sinks = np.flatnonzero(dag.to_sink)
    x_cols, z_cols = {}, {}
    for c in range(problem.num_clients):
        n = int(problem.requests[c])
        if n <= 0:
            continue
        t = problem.token_cost_s[c]
        cost = np.where(np.isfinite(t[dst]), decode_hop_cost_s(t[dst], problem.tau_s[dst], blocks), INF)
        ok = np.isfinite(cost) & (blocks <= slots[dst])
        ub = np.where(ok, np.minimum(n, slots[dst] // np.maximum(blocks, 1)), 0).astype(float)
        x_cols[c] = m.add_vars(E, 0, ub, np.where(ok, cost, 0.0), integer=True)
        z_cols[c] = m.add_vars(len(sinks), 0, n, 0.0, integer=True)
        # conservation: source out = n; node k: in − out − sink = 0; Σ sink = n
        R, C, V = [], [], []
        for e in range(E):
            R.append(int(dag.edge_dst[e])); C.append(int(x_cols[c][e])); V.append(1.0)
            if dag.edge_src[e] == dag.n:
                R.append(dag.n); C.append(int(x_cols[c][e])); V.append(1.0)
            else:
                R.append(int(dag.edge_src[e])); C.append(int(x_cols[c][e])); V.append(-1.0)
        for i, k in enumerate(sinks):
            R.append(int(k)); C.append(int(z_cols[c][i])); V.append(-1.0)
            R.append(dag.n + 1); C.append(int(z_cols[c][i])); V.append(1.0)
        rhs = np.zeros(dag.n + 2)
        rhs[dag.n] = rhs[dag.n + 1] = n
        m.add_rows(R, C, V, rhs, rhs)
    if not x_cols:  # pragma: no cover - check_problem requires a request
        raise ScenarioError("problem.requests", "expected at least one request")
    # memory in slots: Σ_c Σ_{e into j} m_e x^c_e ≤ slots_j
    R, C, V = [], [], []
    for c, cols in x_cols.items():
        for e in range(E):
            R.append(int(dst[e])); C.append(int(cols[e])); V.append(float(blocks[e]))
    m.add_rows(R, C, V, np.full(problem.num_servers, -INF), slots.astype(float))
    res = m.solve(time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap, deadline=deadline, random_seed=random_seed)
    if res.status == "infeasible":
        try:
            for c in x_cols:
                dag.shortest(HopCost(fixed_s=np.asarray(problem.token_cost_s[c], float), per_block_s=problem.tau_s))
        except NoFeasibleChain as exc:
            raise NoFeasibleChain(f"routing ILP (19) infeasible: {exc}") from None
        raise NoFeasibleChain(f"routing ILP (19) infeasible: the placement's chains cannot hold the KV caches of all "
                              f"{problem.total_requests} requests at once (memory M_j − s_m·m_j binds)")
    if not res.has_solution:
        raise SolverTimeout(f"routing ILP (19) stopped ({res.status}) without a solution", None, None)
    routes: list[tuple[int, Route]] = []
    for c, cols in x_cols.items():
        # decompose the acyclic integer flow: at node k, in-flow = out-flow + sink flow, so a walk may
        # stop wherever sink flow is left and otherwise follows any edge with flow left
        flow = np.round(res.x[cols]).astype(np.int64)
        out = defaultdict(list)
        for e in np.flatnonzero(flow > 0):
            out[int(dag.edge_src[e])].append([int(e), int(flow[e])])
        sink_left = {int(k): int(round(res.x[z_cols[c][i]])) for i, k in enumerate(sinks)}
        for _ in range(int(problem.requests[c])):
            node, nodes = dag.n, []
            while not (node != dag.n and sink_left.get(node, 0) > 0):
                cand = [item for item in out.get(node, ()) if item[1] > 0]
                if not cand:
                    raise RuntimeError(f"routing ILP flow of client {c} breaks conservation at DAG node {node}")
                cand[0][1] -= 1
                node = int(dag.edge_dst[cand[0][0]])
                nodes.append(node)
            sink_left[node] -= 1
            routes.append((c, route_from_chain(placement, [int(dag.servers[k]) for k in nodes], client_blocks)))
    lmax = problem.output_tokens
    obj = lmax * sum(problem.chain_cost_s(r, c) for c, r in routes)
    if abs(obj - lmax * res.objective) > 1e-5 * max(1.0, obj):
        raise RuntimeError(f"internal error: routing ILP objective {lmax * res.objective} ≠ recomputed {obj}")
    used = np.zeros(problem.num_servers, dtype=np.int64)
    for _, r in routes:
        for h in r.hops:
            used[h.server] += h.blocks * s_c
    if np.any(used > np.maximum(cap, 0)):
        raise RuntimeError("internal error: routing ILP routes exceed a server's KV capacity")
    bound = lmax * res.bound
    gap = rel_gap(obj, min(bound, obj))
    proven = res.status == "optimal" or gap <= mip_rel_gap + 1e-9
    sol = RoutingSolution(routes, obj, min(bound, obj), gap, "optimal" if proven else res.status, proven,
                          time.perf_counter() - t0, res.node_count)
    if strict and not proven:
        raise SolverTimeout(f"routing ILP (19) not proven optimal: gap {gap:.2%}", sol, gap)
    return sol


class RoutingILPRouter:
    """Online use of the routing-only ILP (19) (``rr-ilp``, family ``default``).

    Per arriving request, (19) is solved for that one request under the KV memory free now: with one
    unit of flow, and a chain visiting each server at most once, the memory rows reduce to "edge
    (i, j) is allowed iff j has room for m_ij blocks of this request now", so (19) is exactly the
    cheapest chain under the decode cost t_cj + τ_j·m_ij over the edges that fit — solved on the core's
    chain DAG (``method="dag"``, default) or, for cross-checking, by HiGHS (``method="ilp"``).  If no
    chain fits now, the request is routed as (19) at the earliest instant one does: over the edges
    whose waiting time t^W_ij (``view.waiting_time_s``) is at most θ, for the smallest θ admitting a
    chain; the simulator then holds it until that chain has room."""

    name = "rr-ilp"
    family = "default"

    def __init__(self, method: str = "dag"):
        """Raises ScenarioError (path ``policy_defaults.options.rr-ilp.method``) unless ``method`` is
        ``"dag"`` or ``"ilp"``."""
        if not isinstance(method, str) or method not in ROUTING_METHODS:
            raise option_error(self.name, "method", f"one of {list(ROUTING_METHODS)}", method)
        self.method = method

    def route(self, request: Request, view: ClusterView, rng: np.random.Generator) -> Route:
        """The chain of the routing ILP's solution for ``request``.

        Raises:
            NoFeasibleChain: no chain can ever hold the request's KV cache, or the ILP finds none."""
        dag = view.feasible_dag(request.client, request.client_blocks)
        cost = view.decode_cost(request.client)
        wait = view.waiting_time_s(request, dag)
        finite = np.unique(wait[np.isfinite(wait)])
        if len(finite) == 0:
            raise NoFeasibleChain(f"request {request.id}: no chain can ever hold its KV cache "
                                  f"(or the placement leaves blocks uncovered)")
        for theta in finite:
            allowed = wait <= theta
            if self.method == "ilp":
                route = self._route_ilp(request, view, dag, allowed)
            else:
                extra = np.where(allowed, 0.0, INF)
                try:
                    route = dag.shortest(HopCost(cost.fixed_s, cost.per_block_s, edge_extra_s=extra))[0]
                except NoFeasibleChain:
                    route = None
            if route is not None:
                return route
        raise NoFeasibleChain(f"request {request.id}: no feasible chain")

    @staticmethod
    def _route_ilp(request: Request, view: ClusterView, dag: ChainDAG, allowed: np.ndarray) -> Route | None:
        """(19) for one request by HiGHS: binary x_e on allowed edges, unit flow, min decode cost."""
        m = MIPModel()
        cost = dag.edge_weights(view.decode_cost(request.client))
        x = m.add_vars(dag.num_edges, 0, allowed.astype(float), np.where(allowed, cost, 0.0), integer=True)
        sinks = np.flatnonzero(dag.to_sink)
        z = m.add_vars(len(sinks), 0, 1, 0.0, integer=True)
        R, C, V = [], [], []
        for e in range(dag.num_edges):
            R.append(int(dag.edge_dst[e])); C.append(int(x[e])); V.append(1.0)
            R.append(dag.n if dag.edge_src[e] == dag.n else int(dag.edge_src[e])); C.append(int(x[e]))
            V.append(1.0 if dag.edge_src[e] == dag.n else -1.0)
        for i, k in enumerate(sinks):
            R += [int(k), dag.n + 1]; C += [int(z[i]), int(z[i])]; V += [-1.0, 1.0]
        rhs = np.zeros(dag.n + 2)
        rhs[dag.n] = rhs[dag.n + 1] = 1.0
        m.add_rows(R, C, V, rhs, rhs)
        res = m.solve(time_limit_s=10.0, mip_rel_gap=0.0, random_seed=0)
        if not res.has_solution:
            return None
        succ = {int(dag.edge_src[e]): int(dag.edge_dst[e]) for e in np.flatnonzero(res.x[x] > 0.5)}
        nodes, node = [], dag.n
        while node in succ and len(nodes) <= dag.n:
            node = succ[node]
            nodes.append(node)
        return view.route_from_chain([int(dag.servers[k]) for k in nodes], request.client_blocks)


__all__ = ["ROUTING_METHODS", "RoutingILPRouter", "RoutingSolution", "solve_routing_ilp"]

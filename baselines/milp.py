"""The BPRR MILP and the routing-only ILP (19) of arXiv 2512.21884, solved with HiGHS.

Offline problem (:class:`distllm_env.offline.OfflineProblem`, reference geo_distributed_inference.md
§3): place contiguous block ranges on servers and route a fixed set of concurrent requests, each on
one Lemma-1-feasible chain, minimising the decode-phase cost

    l_max · Σ_r Σ_{(i,j) ∈ p_r} (t_{c_r j} + τ_j·m_ij)        (13a)

subject to s_m·m_j + s_c·Σ_r k_rj ≤ M_j per server and every GPU's block cap (MIG = 4).

Three formulations are selectable (``formulation=``):

* ``"arcflow"`` (default) — one integer flow per client over block positions
  (:mod:`.milp_arcflow`), bounded below by the per-client stand-alone optimum
  (:mod:`.milp_bounds`), started from CG-BPRR's solution (improved by a placement local search,
  :mod:`.milp_heuristic`, when it does not already meet the bound) and pruned exactly by it;
* ``"rlt"`` — the published link model plus RLT products of its hop-feasibility rows with the flow
  variables (:mod:`.milp_link`);
* ``"literal"`` — the published link model (13a–f) with McCormick auxiliaries (9–12), kept for
  comparison; its LP bound is far below zero, so it rarely proves optimality.

Every solution is re-checked with the core's own feasibility code (``problem.is_feasible``, which
uses :func:`distllm_env.chains.check_route` for Lemma 1 and m_ij) and its objective recomputed with
``problem.objective_s``; a mismatch raises instead of returning a doubtful answer.  An infeasible
instance raises :class:`BPRRInfeasible` (a :class:`~distllm_env.errors.PlacementError`) naming the
cause; a time-out returns the incumbent flagged ``proven_optimal=False`` with its gap (or raises
:class:`~distllm_env.errors.SolverTimeout` carrying it when ``strict=True``).

Policies: :class:`MILPPlacement` (``milp``, family ``proposed``) and :class:`RoutingILPRouter`
(``rr-ilp``, family ``default``).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from distllm_env.chains import ChainDAG, HopCost, Route, route_from_chain
from distllm_env.errors import NoFeasibleChain, PlacementError, SolverTimeout
from distllm_env.instance import Instance
from distllm_env.offline import OfflineProblem
from distllm_env.placement import CachePolicy, Placement, PlacementResult
from distllm_env.view import ClusterView
from distllm_env.workload import Request

from .milp_arcflow import ArcFlowModel
from .milp_bounds import standalone_bound, unreachable_reason
from .milp_heuristic import local_search
from .milp_highs import INF, MIPModel
from .milp_link import LinkModel

FORMULATIONS = ("arcflow", "rlt", "literal")


class BPRRInfeasible(PlacementError):
    """The offline instance has no feasible solution.  ``cause`` is ``"no_chain"`` (some client has no
    chain under any placement) or ``"memory"`` (the MILP is infeasible: the requests' KV caches
    cannot all be held at once)."""

    def __init__(self, message: str, cause: str, client: int | None = None):
        self.cause = cause
        self.client = client
        super().__init__(message)


def _cg_bprr():
    """CG-BPRR from :mod:`.cg_bp`, or None while that module is unavailable."""
    try:
        from .cg_bp import cg_bprr
    except ImportError:  # pragma: no cover - cg_bp ships with the package
        return None
    return cg_bprr


@dataclass
class MILPSolution:
    """A BPRR solution with its certificate.

    ``objective_s`` = l_max·Σ_r per-token decode cost (recomputed by ``problem.objective_s``);
    ``bound_s`` is the best proven lower bound (the larger of HiGHS's dual bound and the stand-alone
    bound); ``gap`` = (objective − bound)/objective; ``proven_optimal`` iff gap ≤ the requested
    ``mip_rel_gap`` (``proof`` says which bound proved it).  ``solver_bound_s``/``solver_gap`` are
    what HiGHS itself reported for its formulation.  ``solve_time_s`` is the total wall time (stand-
    alone bound, warm start, model build and HiGHS); ``solver_time_s`` HiGHS's part."""

    placement: Placement
    routes: list[tuple[int, Route]]
    objective_s: float
    bound_s: float
    gap: float
    status: str
    proven_optimal: bool
    solve_time_s: float
    formulation: str
    solver_status: str = "not_run"
    solver_bound_s: float = -INF
    solver_gap: float = INF
    standalone_bound_s: float = -INF
    proof: str | None = None
    solver_time_s: float = 0.0
    build_time_s: float = 0.0
    node_count: int = 0
    num_vars: int = 0
    num_rows: int = 0
    rounds: int = 0
    pruned_hops: int = 0
    warm_start: str = "none"
    warm_start_objective_s: float | None = None
    heuristic_objective_s: float | None = None
    heuristic_time_s: float = 0.0
    heuristic_evaluations: int = 0
    mip_rel_gap: float = 1e-4
    time_limit_s: float | None = None
    output_tokens: int = 0
    total_requests: int = 0

    @property
    def per_token_s(self) -> float:
        """Average per-token decode cost of a request: objective / (l_max · |R|)."""
        return self.objective_s / (self.output_tokens * self.total_requests)

    def diagnostics(self) -> dict[str, Any]:
        """The fields a placement's diagnostics, the CLI and ``compare`` print."""
        return {
            "status": self.status, "objective_s": self.objective_s, "bound_s": self.bound_s, "gap": self.gap,
            "proven_optimal": self.proven_optimal, "formulation": self.formulation,
            "solve_time_s": self.solve_time_s, "solver_time_s": self.solver_time_s,
            "solver_status": self.solver_status, "solver_bound_s": self.solver_bound_s, "solver_gap": self.solver_gap,
            "standalone_bound_s": self.standalone_bound_s, "proof": self.proof, "node_count": self.node_count,
            "num_vars": self.num_vars, "num_rows": self.num_rows, "rounds": self.rounds,
            "pruned_hops": self.pruned_hops, "warm_start": self.warm_start,
            "warm_start_objective_s": self.warm_start_objective_s, "heuristic_objective_s": self.heuristic_objective_s,
            "heuristic_time_s": self.heuristic_time_s, "heuristic_evaluations": self.heuristic_evaluations,
            "mip_rel_gap": self.mip_rel_gap,
            "time_limit_s": self.time_limit_s, "per_token_s": self.per_token_s,
        }


def _rel_gap(obj: float, bound: float) -> float:
    """HiGHS's convention: (objective − bound)/|objective| (0 when both are 0)."""
    if not math.isfinite(obj):
        return INF
    if obj == bound:
        return 0.0
    return max(obj - bound, 0.0) / max(abs(obj), 1e-12)


def _check_problem(problem: OfflineProblem) -> None:
    if not isinstance(problem, OfflineProblem):
        raise TypeError(f"problem must be an OfflineProblem, got {type(problem).__name__}")
    if problem.total_requests <= 0:
        raise ValueError("problem.requests must contain at least one request (got none)")
    if np.any(problem.requests < 0):
        raise ValueError(f"problem.requests must be ≥ 0 per client, got {problem.requests.tolist()}")
    if problem.output_tokens <= 0:
        raise ValueError(f"problem.output_tokens (l_max) must be positive, got {problem.output_tokens}")


def solve_bprr(problem: OfflineProblem, formulation: str = "arcflow", time_limit_s: float | None = 60.0,
               mip_rel_gap: float = 1e-4, warm_start: bool = True, strict: bool = False,
               heuristic_time_s: float | None = None, random_seed: int = 0, log: bool = False) -> MILPSolution:
    """Solve the offline BPRR problem with HiGHS (see the module docstring).

    ``time_limit_s`` bounds the whole call after the (fast) stand-alone bound — local search, model
    building and HiGHS (``None`` = no limit); ``mip_rel_gap`` is the relative gap at which a solution
    counts as optimal; ``warm_start`` offers CG-BPRR's solution (planned for all the problem's
    requests) as the first incumbent; ``heuristic_time_s`` is the budget of the placement local search
    (:mod:`.milp_heuristic`) that improves that incumbent when it does not already meet the stand-alone
    bound (default: a quarter of the time limit, at most 60 s, for ``arcflow``; 0 for the link
    formulations, which are kept as published); ``strict`` turns "time limit reached with an
    incumbent" into :class:`SolverTimeout` (``incumbent`` = the :class:`MILPSolution`, ``gap`` its gap).
    Raises :class:`BPRRInfeasible` for an infeasible instance and :class:`SolverTimeout` if the time
    limit passes before any feasible solution is known."""
    t_start = time.perf_counter()
    _check_problem(problem)
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    if time_limit_s is not None and not (time_limit_s > 0):
        raise ValueError(f"time_limit_s must be positive or None, got {time_limit_s!r}")
    if not (0 <= mip_rel_gap < 1):
        raise ValueError(f"mip_rel_gap must be in [0, 1), got {mip_rel_gap!r}")
    if heuristic_time_s is not None and not (heuristic_time_s >= 0):
        raise ValueError(f"heuristic_time_s must be ≥ 0 or None, got {heuristic_time_s!r}")
    lmax = problem.output_tokens
    deadline = None if time_limit_s is None else t_start + time_limit_s

    # 1. stand-alone bound; a client without any chain makes the instance infeasible
    lb_s, chains = standalone_bound(problem)
    for c, ch in enumerate(chains):
        if problem.requests[c] > 0 and not math.isfinite(ch.cost_per_token_s):
            raise BPRRInfeasible(f"BPRR infeasible: {unreachable_reason(problem, c)}", "no_chain", c)

    # 2. warm start from CG-BPRR
    ws_placement = ws_routes = None
    ws_obj = None
    ws_note = "none"
    if warm_start:
        cg = _cg_bprr()
        if cg is None:
            ws_note = "unavailable (baselines.cg_bp missing)"
        else:
            try:
                sol, routes, obj = cg(problem, problem.total_requests)
            except (PlacementError, NoFeasibleChain) as exc:
                ws_note = f"cg-bprr infeasible: {exc}"
            else:
                if problem.is_feasible(sol.placement, routes):
                    ws_placement, ws_routes, ws_obj = sol.placement, list(routes), float(obj)
                    ws_note = "cg-bprr"
                else:
                    ws_note = "cg-bprr solution infeasible for this problem"

    lb_exact = np.array([ch.cost_per_token_s for ch in chains])
    lb_pt = lb_s / lmax
    tol = mip_rel_gap + 1e-9
    best = (ws_obj, ws_placement, ws_routes) if ws_obj is not None else None

    # 2b. local search on the placement when the warm start is not already proven optimal
    if heuristic_time_s is None:
        heuristic_time_s = 0.0 if formulation != "arcflow" else min(
            60.0, 0.25 * (time_limit_s if time_limit_s is not None else 120.0))
    heuristic = {"evaluations": 0, "time_s": 0.0, "objective_s": None}
    if best is not None and heuristic_time_s > 0 and _rel_gap(best[0], min(lb_s, best[0])) > tol:
        t_h = time.perf_counter()
        budget = heuristic_time_s if deadline is None else min(heuristic_time_s, deadline - t_h)
        if budget > 0:
            pl, rts, obj_h, evals = local_search(problem, best[1], best[0], budget)
            heuristic.update(evaluations=evals, time_s=time.perf_counter() - t_h, objective_s=obj_h)
            if rts is not None and obj_h < best[0]:
                best = (problem.objective_s(pl, rts), pl, rts)
                ws_note += " + local search"

    # 3.–5. build, solve, re-check.  arcflow: prune with the incumbent, skip HiGHS when the
    # incumbent already meets the stand-alone bound, and rebuild while HiGHS keeps improving it.
    stats = {"build": 0.0, "solver": 0.0, "nodes": 0, "vars": 0, "rows": 0, "rounds": 0, "pruned": 0,
             "status": "not_run", "solver_bound_s": -INF}
    while True:
        if formulation == "arcflow" and best is not None and _rel_gap(best[0], min(lb_s, best[0])) <= tol:
            break                                      # proven by the stand-alone bound
        remaining = None if deadline is None else deadline - time.perf_counter()
        if remaining is not None and remaining <= 0.05 and stats["rounds"] > 0:
            break
        t_build = time.perf_counter()
        limits = None
        if formulation == "arcflow":
            if best is not None:
                excess = max(best[0] / lmax - lb_pt, 0.0)
                limits = lb_exact + excess * (1 + 1e-9) + 1e-9
            built = ArcFlowModel(problem, standalone_per_token_s=lb_exact, hop_limit_per_token_s=limits)
            stats["pruned"] = built.pruned_hops
        else:
            built = LinkModel(problem, formulation)
        start = None
        if best is not None:
            start = built.encode(best[1], best[2])
            if start is None:
                raise RuntimeError(f"internal error: the incumbent cannot be expressed in the {formulation} model")
            val, viol = built.model.evaluate(start)
            if viol > 1e-6 or abs(lmax * val - best[0]) > 1e-6 * max(1.0, best[0]):
                raise RuntimeError(f"internal error: the {formulation} encoding of the incumbent is not consistent "
                                   f"(violation {viol:g}, objective {lmax * val} vs {best[0]})")
        stats["build"] += time.perf_counter() - t_build
        remaining = None if deadline is None else max(deadline - time.perf_counter(), 0.05)
        res = built.model.solve(time_limit_s=remaining, mip_rel_gap=mip_rel_gap, start=start,
                                random_seed=random_seed, log=log)
        stats["rounds"] += 1
        stats["solver"] += res.solve_time_s
        stats["nodes"] += res.node_count
        stats["vars"], stats["rows"], stats["status"] = res.num_vars, res.num_rows, res.status
        if start is not None and res.start_accepted is False:
            ws_note += " (start rejected by HiGHS)"
        if res.status == "infeasible":
            if limits is not None:
                raise RuntimeError("internal error: the pruned arc-flow model lost its own incumbent")
            raise BPRRInfeasible(
                f"BPRR infeasible ({formulation} MILP proven infeasible by HiGHS): every client has a chain on its "
                f"own, but no placement holds the KV caches of all {problem.total_requests} requests at once "
                f"(memory s_m·m_j + s_c·Σ_r k_rj ≤ M_j binds)", "memory")
        # the pruned model holds every solution ≤ the incumbent, so min(incumbent, its bound) is global
        rb = lmax * res.bound if math.isfinite(res.bound) else res.bound
        if limits is not None:
            rb = min(rb, best[0])
        stats["solver_bound_s"] = rb
        improved = False
        if res.has_solution:
            placement, routes = built.decode(res.x)
            if not problem.is_feasible(placement, routes):
                raise RuntimeError(f"internal error: the {formulation} MILP returned a solution that fails "
                                   f"problem.is_feasible (placement {placement.describe()})")
            obj = problem.objective_s(placement, routes)
            if abs(obj - lmax * res.objective) > 1e-5 * max(1.0, obj):
                raise RuntimeError(f"internal error: MILP objective {lmax * res.objective} differs from the "
                                   f"recomputed objective {obj}")
            if best is None or obj < best[0] - 1e-9 * max(1.0, abs(best[0])):
                improved = best is not None and formulation == "arcflow"
                best = (obj, placement, routes)
        if res.status == "optimal" or formulation != "arcflow" or not improved:
            break
        # a better incumbent prunes more: rebuild only if it shrank the excess markedly
        if best[0] / lmax - lb_pt > 0.5 * max(excess, 0.0):
            break
    if best is None:
        raise SolverTimeout(f"{formulation} MILP stopped ({stats['status']}) after {stats['solver']:.1f} s without a "
                            f"feasible solution", incumbent=None, gap=None)
    obj, placement, routes = best
    solver_bound_s = stats["solver_bound_s"]
    bound_s = min(max(solver_bound_s, lb_s), obj)      # round-off: a bound never exceeds a feasible value
    gap = _rel_gap(obj, bound_s)
    solver_gap = _rel_gap(obj, min(solver_bound_s, obj)) if math.isfinite(solver_bound_s) else INF
    proof = None
    if stats["status"] == "optimal" or solver_gap <= tol:
        proof = "solver"
    elif _rel_gap(obj, min(lb_s, obj)) <= tol:
        proof = "standalone-bound"
    proven = proof is not None
    status = "optimal" if proven else stats["status"]
    solution = MILPSolution(
        placement=placement, routes=list(routes), objective_s=float(obj), bound_s=float(bound_s), gap=float(gap),
        status=status, proven_optimal=proven, solve_time_s=time.perf_counter() - t_start, formulation=formulation,
        solver_status=stats["status"], solver_bound_s=float(solver_bound_s), solver_gap=float(solver_gap),
        standalone_bound_s=float(lb_s), proof=proof, solver_time_s=stats["solver"], build_time_s=stats["build"],
        node_count=stats["nodes"], num_vars=stats["vars"], num_rows=stats["rows"], rounds=stats["rounds"],
        pruned_hops=stats["pruned"], warm_start=ws_note, warm_start_objective_s=ws_obj,
        heuristic_objective_s=heuristic["objective_s"], heuristic_time_s=heuristic["time_s"],
        heuristic_evaluations=heuristic["evaluations"], mip_rel_gap=mip_rel_gap,
        time_limit_s=time_limit_s, output_tokens=lmax, total_requests=problem.total_requests)
    if strict and not proven:
        raise SolverTimeout(f"{formulation} MILP not proven optimal ({stats['status']}): gap {gap:.2%} after "
                            f"{solution.solve_time_s:.1f} s", incumbent=solution, gap=gap)
    return solution


# --------------------------------------------------------------------------------------------------
# routing-only ILP (19)
# --------------------------------------------------------------------------------------------------

@dataclass
class RoutingSolution:
    """Routes of the routing-only ILP (19) under a fixed placement, with their certificate."""

    routes: list[tuple[int, Route]]
    objective_s: float
    bound_s: float
    gap: float
    status: str
    proven_optimal: bool
    solve_time_s: float
    node_count: int = 0


def solve_routing_ilp(problem: OfflineProblem, placement: Placement, time_limit_s: float | None = 60.0,
                      mip_rel_gap: float = 1e-4, capacity_bytes: Sequence[int] | None = None,
                      kv_block_bytes: int | None = None, client_blocks: int = 0,
                      strict: bool = False) -> RoutingSolution:
    """The routing-only ILP (19) (reference §3.3, the authors' ``RR_ILP_general.m``): integer
    per-client flows x^c_e ∈ [0, n_c] on the edges of the placement's feasible chain DAG (the core's
    :class:`~distllm_env.chains.ChainDAG`), cost l_max·(t_cj + τ_j·m_ij) per unit, KV memory
    Σ_c Σ_{e into j} s_c·m_e·x^c_e ≤ M_j − s_m·m_j (or ``capacity_bytes[j]`` if given), flow
    conservation with supply n_c; the flows are decomposed into one chain per request.

    Raises :class:`NoFeasibleChain` if a client has no chain or the chains cannot hold all requests'
    KV caches, :class:`SolverTimeout` if no solution is found in time (or, with ``strict``, if the
    solution is not proven optimal)."""
    t0 = time.perf_counter()
    _check_problem(problem)
    if placement.num_servers != problem.num_servers or placement.num_blocks != problem.num_blocks:
        raise ValueError(f"placement has {placement.num_servers} servers / {placement.num_blocks} blocks; the "
                         f"problem has {problem.num_servers} / {problem.num_blocks}")
    dag = ChainDAG(placement, client_blocks)
    s_c = int(problem.kv_block_bytes if kv_block_bytes is None else kv_block_bytes)
    if capacity_bytes is None:
        cap = problem.memory_bytes - int(problem.block_bytes) * placement.count_array
    else:
        cap = np.asarray(capacity_bytes, dtype=np.int64)
        if cap.shape != (problem.num_servers,):
            raise ValueError(f"capacity_bytes must have one entry per server ({problem.num_servers}), got {cap.shape}")
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
        cost = np.where(np.isfinite(t[dst]), t[dst] + problem.tau_s[dst] * blocks, INF)
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
    if not x_cols:
        raise ValueError("no client has requests")
    # memory in slots: Σ_c Σ_{e into j} m_e x^c_e ≤ slots_j
    R, C, V = [], [], []
    for c, cols in x_cols.items():
        for e in range(E):
            R.append(int(dst[e])); C.append(int(cols[e])); V.append(float(blocks[e]))
    m.add_rows(R, C, V, np.full(problem.num_servers, -INF), slots.astype(float))
    res = m.solve(time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap)
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
    gap = _rel_gap(obj, min(bound, obj))
    proven = res.status == "optimal" or gap <= mip_rel_gap + 1e-9
    sol = RoutingSolution(routes, obj, min(bound, obj), gap, "optimal" if proven else res.status, proven,
                          time.perf_counter() - t0, res.node_count)
    if strict and not proven:
        raise SolverTimeout(f"routing ILP (19) not proven optimal: gap {gap:.2%}", sol, gap)
    return sol


# --------------------------------------------------------------------------------------------------
# policies
# --------------------------------------------------------------------------------------------------

def split_sessions(instance: Instance, sessions: int) -> list[int]:
    """Spread ``sessions`` planned requests over the instance's clients in proportion to their
    ``weight`` (largest remainder), at least one per client so that every client gets a chain."""
    C = instance.num_clients
    if sessions < C:
        raise ValueError(f"sessions must be at least the number of clients ({C}) so every client gets a chain, "
                         f"got {sessions}")
    w = np.array([max(float(cl.weight), 0.0) for cl in instance.clients])
    w = w / w.sum() if w.sum() > 0 else np.full(C, 1.0 / C)
    extra = sessions - C
    share = w * extra
    base = np.floor(share).astype(int)
    rest = extra - int(base.sum())
    order = np.argsort(-(share - base), kind="stable")
    base[order[:rest]] += 1
    return [int(b) + 1 for b in base]


class MILPPlacement:
    """The BPRR MILP as a placement policy (``milp``, family ``proposed``), cache ``leftover``.

    Options: ``sessions`` — the number of concurrent requests to plan for (int, or ``"auto"`` = the
    |R| rule of CONTRACTS.md §4 via :func:`distllm_env.baselines.cg_bp.choose_sessions`), spread over
    the clients by weight (:func:`split_sessions`); ``formulation`` (``arcflow`` | ``rlt`` |
    ``literal``); ``time_limit_s``; ``mip_rel_gap``; ``strict`` (raise :class:`SolverTimeout` instead
    of returning an unproven placement).  Diagnostics: status, objective_s, bound_s, gap,
    proven_optimal, formulation, solve_time_s (and more, see :meth:`MILPSolution.diagnostics`)."""

    name = "milp"
    family = "proposed"

    def __init__(self, sessions: int | str = "auto", formulation: str = "arcflow", time_limit_s: float = 60.0,
                 mip_rel_gap: float = 1e-4, strict: bool = False, warm_start: bool = True):
        if isinstance(sessions, str):
            if sessions != "auto":
                raise ValueError(f"milp: option 'sessions' must be a positive integer or 'auto', got {sessions!r}")
        elif isinstance(sessions, bool) or not isinstance(sessions, (int, np.integer)) or sessions < 1:
            raise ValueError(f"milp: option 'sessions' must be a positive integer or 'auto', got {sessions!r}")
        if formulation not in FORMULATIONS:
            raise ValueError(f"milp: option 'formulation' must be one of {FORMULATIONS}, got {formulation!r}")
        if not (isinstance(time_limit_s, (int, float)) and time_limit_s > 0):
            raise ValueError(f"milp: option 'time_limit_s' must be a positive number, got {time_limit_s!r}")
        self.sessions = sessions if isinstance(sessions, str) else int(sessions)
        self.formulation = formulation
        self.time_limit_s = float(time_limit_s)
        self.mip_rel_gap = float(mip_rel_gap)
        self.strict = bool(strict)
        self.warm_start = bool(warm_start)

    def resolve_sessions(self, instance: Instance) -> int:
        if self.sessions != "auto":
            return int(self.sessions)
        try:
            from .cg_bp import choose_sessions
        except ImportError:  # pragma: no cover
            raise ValueError("milp: sessions='auto' needs distllm_env.baselines.cg_bp.choose_sessions; "
                             "give an integer instead") from None
        return max(int(choose_sessions(instance)), instance.num_clients)

    def problem(self, instance: Instance) -> OfflineProblem:
        return OfflineProblem.from_instance(instance, split_sessions(instance, self.resolve_sessions(instance)))

    def place(self, instance: Instance, rng: np.random.Generator) -> PlacementResult:
        problem = self.problem(instance)
        sol = solve_bprr(problem, self.formulation, time_limit_s=self.time_limit_s, mip_rel_gap=self.mip_rel_gap,
                         warm_start=self.warm_start, strict=self.strict)
        diag = sol.diagnostics()
        diag["sessions"] = problem.total_requests
        diag["sessions_per_client"] = problem.requests.tolist()
        return PlacementResult(sol.placement, CachePolicy(), diag)


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
        if method not in ("dag", "ilp"):
            raise ValueError(f"rr-ilp: option 'method' must be 'dag' or 'ilp', got {method!r}")
        self.method = method

    def route(self, request: Request, view: ClusterView, rng: np.random.Generator) -> Route:
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
        res = m.solve(time_limit_s=10.0, mip_rel_gap=0.0)
        if not res.has_solution:
            return None
        succ = {int(dag.edge_src[e]): int(dag.edge_dst[e]) for e in np.flatnonzero(res.x[x] > 0.5)}
        nodes, node = [], dag.n
        while node in succ and len(nodes) <= dag.n:
            node = succ[node]
            nodes.append(node)
        return view.route_from_chain([int(dag.servers[k]) for k in nodes], request.client_blocks)


__all__ = ["BPRRInfeasible", "FORMULATIONS", "MILPPlacement", "MILPSolution", "RoutingILPRouter", "RoutingSolution",
           "solve_bprr", "solve_routing_ilp", "split_sessions"]

"""A placement local search that improves the MILP's starting incumbent when memory binds.

CG-BPRR (the MILP's warm start) plans every server for all |R| sessions and routes all of a client's
requests on one chain; when memory binds, much cheaper solutions split the requests over parallel
chains, and HiGHS's own heuristics rarely find them on the large arc-flow model.  This search moves
one server's interval at a time and scores each placement exactly by the routing-only ILP (19)
(:func:`.milp_routing.solve_routing_ilp`, which decomposes the flows into one chain per request), keeping
the best placement of each server's neighbourhood if it improves (best improvement per server,
servers in index order, repeated until a pass improves nothing or the time budget ends).

A server's neighbourhood: host nothing; every interval [s, e) whose ends are both "boundaries" —
0, L, and the start and end of every hosting server — and whose length fits the server (room for one
session, GPU cap); and the server's own interval with either end moved by one block.  A candidate is
scored by the ILP only if its memory-free lower bound Σ_c n_c·(cheapest chain of c) can beat the
incumbent.  The result is a feasible solution (checked by ``problem.is_feasible``), never a bound.

Determinism: the search visits servers and candidates in a fixed order and HiGHS runs with one thread
and a fixed seed, so its result depends on the machine's speed only when the time budget (or a
routing ILP's time limit) stops it; :class:`LocalSearchResult` ``complete`` says whether it did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from distllm_env.chains import ChainDAG, HopCost
from distllm_env.errors import NoFeasibleChain, SolverTimeout
from distllm_env.offline import OfflineProblem
from distllm_env.placement import Placement

from .milp_arcflow import host_max_blocks
from .milp_routing import solve_routing_ilp


@dataclass
class LocalSearchResult:
    """``placement``/``routes``/``objective_s``: the best solution (``routes`` None if nothing
    improved on the start); ``evaluations``: routing ILPs solved; ``complete``: the search ended by
    itself (no improving move left), not by the clock — only then is its result independent of the
    machine's speed."""

    placement: Placement
    routes: list | None
    objective_s: float
    evaluations: int
    complete: bool


def _memory_free_bound(problem: OfflineProblem, placement: Placement) -> float:
    """Σ_c n_c·(cheapest chain of c under the placement), per token; inf if a client has no chain."""
    try:
        dag = ChainDAG(placement)
        total = 0.0
        for c in range(problem.num_clients):
            if problem.requests[c] > 0:
                _, cost = dag.shortest(HopCost(np.asarray(problem.token_cost_s[c], float), problem.tau_s))
                total += problem.requests[c] * cost
        return total
    except NoFeasibleChain:
        return np.inf


def local_search(problem: OfflineProblem, placement: Placement, objective_s: float, time_budget_s: float,
                 ilp_time_limit_s: float = 5.0) -> LocalSearchResult:
    """Improve ``placement`` (whose best routing costs ``objective_s``, seconds) within
    ``time_budget_s`` seconds of wall clock; each candidate's routing ILP gets at most
    ``ilp_time_limit_s``.  Returns a :class:`LocalSearchResult`.

    Raises:
        RuntimeError: only if the search produced an infeasible solution (a bug)."""
    deadline = time.perf_counter() + time_budget_s
    complete = True
    L, N = problem.num_blocks, problem.num_servers
    lmax = problem.output_tokens
    host_len = host_max_blocks(problem)
    best_pairs = list(placement.pairs())
    best_obj, best_routes = objective_s, None
    evals = 0
    improved = True
    while improved:
        if time.perf_counter() >= deadline:
            complete = False
            break
        improved = False
        for j in range(N):
            if time.perf_counter() >= deadline:
                complete = False
                break
            bounds = {0, L}
            for s, c in best_pairs:
                if c > 0:
                    bounds |= {s, s + c}
            bounds = sorted(bounds)
            cands = {(0, 0)}
            cands |= {(s, e - s) for s in bounds for e in bounds if 0 < e - s <= host_len[j]}
            s0, c0 = best_pairs[j]
            if c0 > 0:
                for d1 in (-1, 0, 1):
                    for d2 in (-1, 0, 1):
                        s, e = s0 + d1, s0 + c0 + d2
                        if 0 <= s < e <= L and e - s <= host_len[j]:
                            cands.add((s, e - s))
            cands.discard((s0, c0))
            local_best = None
            for cand in sorted(cands):
                if time.perf_counter() >= deadline:
                    complete = False
                    break
                pairs = list(best_pairs)
                pairs[j] = cand
                trial = Placement.from_pairs(pairs, L)
                target = best_obj if local_best is None else local_best[0]
                if lmax * _memory_free_bound(problem, trial) >= target * (1 - 1e-9):
                    continue
                evals += 1
                try:
                    sol = solve_routing_ilp(problem, trial, time_limit_s=ilp_time_limit_s, deadline=deadline)
                except NoFeasibleChain:
                    continue
                except SolverTimeout:
                    complete = False
                    continue
                if not sol.proven_optimal:
                    complete = False
                if sol.objective_s < target * (1 - 1e-9):
                    local_best = (sol.objective_s, pairs, sol.routes)
            if local_best is not None:
                best_obj, best_pairs, best_routes = local_best
                improved = True
    final = Placement.from_pairs(best_pairs, L)
    if best_routes is not None and not problem.is_feasible(final, best_routes):
        raise RuntimeError("internal error: local search produced an infeasible solution")
    return LocalSearchResult(final, best_routes, best_obj, evals, complete)


__all__ = ["LocalSearchResult", "local_search"]

"""The offline BPRR MILP of arXiv 2512.21884 solved with HiGHS: :func:`solve_bprr`, in named steps.

Problem (docs/milp.md; :class:`distllm_env.offline.OfflineProblem`): place contiguous block ranges on
servers and route a fixed set of concurrent requests, each on one Lemma-1-feasible chain, minimising
the decode-phase cost l_max · Σ_r Σ_{(i,j) ∈ p_r} (t_{c_r j} + τ_j·m_ij) (arXiv 2512.21884 eq. (13a);
the hop cost is :func:`distllm_env.perf.decode_hop_cost_s`) subject to s_m·m_j + s_c·Σ_r k_rj ≤ M_j
(eq. (13b)) and every GPU's block cap.

Steps of :func:`solve_bprr` (each a function below):

1. ``_reduce`` — servers no client with requests can reach are left out (with a note);
2. ``_standalone`` — the stand-alone lower bound (:mod:`.milp_bounds`); a client with no chain makes
   the instance infeasible;
3. ``_warm_start`` — CG-BPRR's solution, then the placement local search (:mod:`.milp_heuristic`);
4. ``_build`` — the model of the chosen formulation (:mod:`.milp_arcflow` or :mod:`.milp_link`),
   under the deadline;
5. ``_solve`` — HiGHS with the remaining time, one thread, a fixed seed;
6. ``_extract`` — decode, re-check with ``problem.is_feasible`` and ``problem.objective_s``;
7. ``_finish`` — the certificate (:class:`MILPSolution`, with :class:`SolveStats`), mapped back to
   the full server set.

``time_limit_s`` bounds the wall clock of the whole call (steps 2–7).  Determinism: every step is
deterministic (fixed orders, HiGHS single-threaded with ``random_seed``) unless a clock stops it —
the time limit, or the local search's own budget; the solution then says so in ``notes`` and
``deterministic=False``.
"""

from __future__ import annotations

import math
import time
import numpy as np

from distllm_env.chains import Hop, Route
from distllm_env.errors import NoFeasibleChain, PlacementError, ScenarioError, SolverTimeout
from distllm_env.offline import OfflineProblem
from distllm_env.placement import Placement

from .milp_arcflow import ArcFlowModel
from .milp_bounds import standalone_bound, unreachable_reason
from .milp_common import (INF, BuildTimeout, Deadline, check_problem, is_number, max_requests, reachable_servers,
                          rel_gap, restrict)
from .milp_heuristic import local_search
from .milp_link import LinkModel
from .milp_result import BPRRInfeasible, MILPSolution, SolveStats

FORMULATIONS = ("arcflow", "rlt", "literal")
#: Largest link model (``literal``/``rlt``) built, in columns: 18 060 per request on ``paper-gtsce``'s
#: 60 servers, so about 55 requests there.  A larger model needs many GB of memory to build.
MAX_LINK_COLUMNS = 1_000_000
#: The note attached to a result that a clock stopped (docs/milp.md, "Determinism").
SPEED_NOTE = "the result may depend on the machine's speed and load"


def _cg_bprr():
    """CG-BPRR from :mod:`.cg_bp`, or None while that module is unavailable."""
    try:
        from .cg_bp import cg_bprr
    except ImportError:  # pragma: no cover - cg_bp ships with the package
        return None
    return cg_bprr


# -- step 0: arguments ------------------------------------------------------------------------------

def _check_args(problem, formulation, time_limit_s, mip_rel_gap, heuristic_time_s) -> None:
    if formulation not in FORMULATIONS:
        raise ScenarioError("formulation", f"expected one of {list(FORMULATIONS)}, got {formulation!r}")
    check_problem(problem, max_requests(formulation))
    if time_limit_s is not None and not (is_number(time_limit_s) and math.isfinite(time_limit_s)
                                         and time_limit_s > 0):
        raise ScenarioError("time_limit_s", f"expected a positive number of seconds or None, got {time_limit_s!r}")
    if not (is_number(mip_rel_gap) and 0 <= mip_rel_gap < 1):
        raise ScenarioError("mip_rel_gap", f"expected a number in [0, 1), got {mip_rel_gap!r}")
    if heuristic_time_s is not None and not (is_number(heuristic_time_s) and math.isfinite(heuristic_time_s)
                                             and heuristic_time_s >= 0):
        raise ScenarioError("heuristic_time_s", f"expected a number ≥ 0 or None, got {heuristic_time_s!r}")


def link_columns(problem: OfflineProblem) -> int:
    """Columns of the link model (``literal``/``rlt``): per request with k reachable servers,
    k² + k edges with a flow and two auxiliaries per server end, plus 2 per server."""
    total = 2 * problem.num_servers
    for c in range(problem.num_clients):
        k = int(np.isfinite(problem.token_cost_s[c]).sum())
        edges = k * k + k                      # source → k, k·(k−1) between servers, k → sink
        total += int(problem.requests[c]) * (edges + 4 * k * k)     # f + α,γ (head) + β,δ (tail)
    return total


def size_error(problem: OfflineProblem, formulation: str) -> str | None:
    """Why the problem is too large for the formulation (the |R| caps), or None.  The problem's
    unreachable servers count only if they are still in it."""
    cap = max_requests(formulation)
    if problem.total_requests > cap:
        return f"expected at most {cap} requests for the {formulation!r} formulation, got {problem.total_requests}"
    if formulation != "arcflow":
        reduced = restrict(problem, reachable_servers(problem))
        cols = link_columns(reduced)
        if cols > MAX_LINK_COLUMNS:
            per_req = max(cols - 2 * reduced.num_servers, 1) / problem.total_requests
            return (f"expected at most {int(MAX_LINK_COLUMNS // per_req)} requests for the {formulation!r} "
                    f"formulation on this instance (about {int(per_req)} columns per request, at most "
                    f"{MAX_LINK_COLUMNS} in all), got {problem.total_requests}; formulation 'arcflow' does not grow "
                    f"with the number of requests")
    return None


# -- step 1: servers no client reaches ----------------------------------------------------------------

def _reduce(problem: OfflineProblem) -> tuple[OfflineProblem, np.ndarray, list[str]]:
    keep = reachable_servers(problem)
    if keep.all():
        return problem, np.arange(problem.num_servers), []
    out = np.flatnonzero(~keep).tolist()
    note = (f"server(s) {out} are unreachable from every client with requests and were excluded from the "
            f"MILP (they host nothing)")
    return restrict(problem, keep), np.flatnonzero(keep), [note]


def _lift(problem: OfflineProblem, kept: np.ndarray, placement: Placement, routes):
    """A solution of the reduced problem in the full problem's server numbering."""
    if len(kept) == problem.num_servers:
        return placement, list(routes)
    pairs = [(0, 0)] * problem.num_servers
    for j, pair in enumerate(placement.pairs()):
        pairs[int(kept[j])] = pair
    full = Placement.from_pairs(pairs, placement.num_blocks)
    lifted = [(c, Route(tuple(Hop(int(kept[h.server]), h.first_block, h.last_block) for h in r.hops)))
              for c, r in routes]
    return full, lifted


# -- step 2: stand-alone bound ------------------------------------------------------------------------

def _standalone(problem: OfflineProblem):
    lb_s, chains = standalone_bound(problem)
    for c, ch in enumerate(chains):
        if problem.requests[c] > 0 and not math.isfinite(ch.cost_per_token_s):
            raise BPRRInfeasible(f"BPRR infeasible: {unreachable_reason(problem, c)}", "no_chain", c)
    return lb_s, chains


# -- step 3: warm start and local search --------------------------------------------------------------

def _warm_start(problem: OfflineProblem):
    """CG-BPRR's solution as (objective, placement, routes), or None, and a note."""
    cg = _cg_bprr()
    if cg is None:  # pragma: no cover
        return None, "unavailable (baselines.cg_bp missing)"
    try:
        sol, routes, obj = cg(problem, problem.total_requests)
    except (PlacementError, NoFeasibleChain) as exc:
        return None, f"cg-bprr infeasible: {exc}"
    if not problem.is_feasible(sol.placement, routes):
        return None, "cg-bprr solution infeasible for this problem"
    return (float(obj), sol.placement, list(routes)), "cg-bprr"


def _improve(problem, best, budget_s):
    """Local search from ``best``: (new best, {evaluations, time_s, objective_s}, complete)."""
    t0 = time.perf_counter()
    res = local_search(problem, best[1], best[0], budget_s)
    info = {"evaluations": res.evaluations, "time_s": time.perf_counter() - t0, "objective_s": res.objective_s}
    if res.routes is not None and res.objective_s < best[0]:
        best = (problem.objective_s(res.placement, res.routes), res.placement, res.routes)
    return best, info, res.complete


# -- steps 4–6: build, solve, extract -----------------------------------------------------------------

def _build(problem, formulation, best, lb_exact, deadline: Deadline):
    """The model and, for arcflow with an incumbent, the per-client hop limits it was pruned with."""
    limits = None
    if formulation == "arcflow":
        if best is not None:
            excess = max(best[0] / problem.output_tokens - float(problem.requests @ lb_exact), 0.0)
            limits = lb_exact + excess * (1 + 1e-9) + 1e-9
        built = ArcFlowModel(problem, standalone_per_token_s=lb_exact, hop_limit_per_token_s=limits,
                             deadline=deadline)
    else:
        built = LinkModel(problem, formulation, deadline=deadline)
    start = None
    deadline.check(f"{formulation} start vector")
    if best is not None:
        start = built.encode(best[1], best[2])
        if start is None:
            raise RuntimeError(f"internal error: the incumbent cannot be expressed in the {formulation} model")
        val, viol = built.model.evaluate(start)
        if viol > 1e-6 or abs(problem.output_tokens * val - best[0]) > 1e-6 * max(1.0, best[0]):
            raise RuntimeError(f"internal error: the {formulation} encoding of the incumbent is not consistent "
                               f"(violation {viol:g}, objective {problem.output_tokens * val} vs {best[0]})")
    built.model._arrays()                  # assembled here, under the build deadline
    deadline.check(f"{formulation} matrix assembly")
    return built, limits, start


def _solve(built, start, deadline: Deadline, mip_rel_gap, random_seed, log):
    # keep 15 % of what is left in reserve: HiGHS overruns its limit by seconds on models with
    # millions of non-zeros (presolve and the hand-over of a start solution are not interruptible),
    # and decoding and re-checking the solution take time too
    at = deadline.at
    if at is not None:
        left = at - time.perf_counter()
        at -= max(0.15 * left, 0.0)
    return built.model.solve(time_limit_s=None, mip_rel_gap=mip_rel_gap, start=start, random_seed=random_seed,
                             log=log, deadline=at)


def _extract(problem, formulation, built, res):
    """The decoded, re-checked (objective_s, placement, routes), or None without a solution."""
    if not res.has_solution:
        return None
    placement, routes = built.decode(res.x)
    if not problem.is_feasible(placement, routes):
        raise RuntimeError(f"internal error: the {formulation} MILP returned a solution that fails "
                           f"problem.is_feasible (placement {placement.describe()})")
    obj = problem.objective_s(placement, routes)
    if abs(obj - problem.output_tokens * res.objective) > 1e-5 * max(1.0, obj):
        raise RuntimeError(f"internal error: MILP objective {problem.output_tokens * res.objective} differs from "
                           f"the recomputed objective {obj}")
    return obj, placement, routes


def _memory_infeasible(problem, formulation) -> BPRRInfeasible:
    return BPRRInfeasible(
        f"BPRR infeasible ({formulation} MILP proven infeasible by HiGHS): every client has a chain on its "
        f"own, but no placement holds the KV caches of all {problem.total_requests} requests at once "
        f"(memory s_m·m_j + s_c·Σ_r k_rj ≤ M_j binds)", "memory")


def solve_bprr(problem: OfflineProblem, formulation: str = "arcflow", time_limit_s: float | None = 60.0,
               mip_rel_gap: float = 1e-4, warm_start: bool = True, strict: bool = False,
               heuristic_time_s: float | None = None, random_seed: int = 0, log=False) -> MILPSolution:
    """Solve the offline BPRR problem with HiGHS (see the module docstring and docs/milp.md).

    ``time_limit_s`` (seconds, ``None`` = no limit) bounds the wall clock of the whole call: bound,
    warm start, local search, model building (checked as the model grows), HiGHS (given what is left)
    and extraction.  ``mip_rel_gap`` is the relative gap at which a solution counts as optimal;
    ``warm_start`` offers CG-BPRR's solution (planned for all the problem's requests) as the first
    incumbent; ``heuristic_time_s`` is the budget of the placement local search
    (:mod:`.milp_heuristic`) that improves it when it does not already meet the stand-alone bound
    (default: a quarter of the time limit, at most 60 s, for ``arcflow``; 0 for the link
    formulations, which are kept as published); ``random_seed`` is HiGHS's seed; ``log`` sends
    HiGHS's log to a file (a path) or to the logger ``distllm_env.highs`` (True), never to stdout.

    When the time limit (or the build deadline) passes with an incumbent, the incumbent is returned
    with ``status="time_limit"``, ``proven_optimal=False`` and a note; ``strict=True`` raises
    :class:`SolverTimeout` carrying it (``incumbent``, ``gap``) instead.  Raises
    :class:`BPRRInfeasible` for an infeasible instance, :class:`SolverTimeout` (``incumbent=None``)
    if the time passes before any feasible solution is known, and ScenarioError (path = the
    argument, or ``problem.requests`` for more than :data:`.milp_common.MAX_REQUESTS` requests —
    :data:`.milp_common.MAX_LINK_REQUESTS` or :data:`MAX_LINK_COLUMNS` columns for the link
    formulations) for bad arguments."""
    t_start = time.perf_counter()
    _check_args(problem, formulation, time_limit_s, mip_rel_gap, heuristic_time_s)
    deadline = Deadline(None if time_limit_s is None else t_start + float(time_limit_s))
    # building stops a little early: dropping a half-built model and decoding take time too
    build_deadline = Deadline(None if time_limit_s is None else deadline.at - min(10.0, 0.15 * float(time_limit_s)))
    full = problem
    problem, kept, notes = _reduce(full)
    too_big = size_error(problem, formulation)
    if too_big:
        raise ScenarioError("problem.requests", too_big)
    lmax = problem.output_tokens
    stats = SolveStats()
    deterministic = True

    t = time.perf_counter()
    lb_s, chains = _standalone(problem)
    stats.standalone_s = time.perf_counter() - t
    lb_exact = np.array([ch.cost_per_token_s for ch in chains])
    tol = mip_rel_gap + 1e-9

    best, ws_note = None, "none"
    if warm_start:
        t = time.perf_counter()
        best, ws_note = _warm_start(problem)
        stats.warm_start_s = time.perf_counter() - t
    ws_obj = best[0] if best is not None else None

    if heuristic_time_s is None:
        heuristic_time_s = 0.0 if formulation != "arcflow" else min(
            60.0, 0.25 * (time_limit_s if time_limit_s is not None else 120.0))
    heuristic = {"evaluations": 0, "time_s": 0.0, "objective_s": None}
    if best is not None and heuristic_time_s > 0 and rel_gap(best[0], min(lb_s, best[0])) > tol:
        left = deadline.left_s()
        budget = heuristic_time_s if left is None else min(heuristic_time_s, left)
        if budget > 0:
            before = best[0]
            best, heuristic, complete = _improve(problem, best, budget)
            stats.heuristic_s = heuristic["time_s"]
            if best[0] < before:
                ws_note += " + local search"
            if not complete:
                deterministic = False
                notes.append(f"the placement local search was stopped by its time budget ({budget:.3g} s); "
                             f"{SPEED_NOTE}")

    # build, solve, extract; arcflow: prune with the incumbent, skip HiGHS when the incumbent already
    # meets the stand-alone bound, and rebuild while HiGHS keeps improving it markedly
    while True:
        if formulation == "arcflow" and best is not None and rel_gap(best[0], min(lb_s, best[0])) <= tol:
            break                                      # proven by the stand-alone bound
        if deadline.passed() or (stats.rounds > 0 and deadline.left_s() <= 0.05):
            stats.time_limit_hit = True
            if stats.rounds == 0:
                stats.status = "time_limit"
            break
        t = time.perf_counter()
        try:
            built, limits, start = _build(problem, formulation, best, lb_exact, build_deadline)
        except BuildTimeout as exc:
            stats.build_s += time.perf_counter() - t
            stats.time_limit_hit = True
            stats.status = "build_time_limit"
            notes.append(f"the time limit passed while building the {formulation} model ({exc}); HiGHS was not "
                         f"run in this round")
            break
        stats.build_s += time.perf_counter() - t
        if formulation == "arcflow":
            stats.pruned_hops = built.pruned_hops
        res = _solve(built, start, deadline, mip_rel_gap, random_seed, log)
        stats.rounds += 1
        stats.solve_s += res.solve_time_s
        stats.node_count += res.node_count
        stats.num_vars, stats.num_constraints, stats.status = res.num_vars, res.num_rows, res.status
        if res.status == "time_limit":
            stats.time_limit_hit = True
        if not res.ran:
            stats.time_limit_hit = True
            notes.append(f"HiGHS was not run: too little time was left for its presolve "
                         f"({res.num_rows} rows; presolve cannot be interrupted)")
        if start is not None and res.start_accepted is False:
            ws_note += " (start rejected by HiGHS)"
        if res.status == "infeasible":
            if limits is not None:
                raise RuntimeError("internal error: the pruned arc-flow model lost its own incumbent")
            raise _memory_infeasible(problem, formulation)
        # the pruned model holds every solution ≤ the incumbent, so min(incumbent, its bound) is global
        rb = lmax * res.bound if math.isfinite(res.bound) else res.bound
        if limits is not None:
            rb = min(rb, best[0])
        stats.bound_s = rb
        found = _extract(problem, formulation, built, res)
        improved = False
        if found is not None and (best is None or found[0] < best[0] - 1e-9 * max(1.0, abs(best[0]))):
            improved = best is not None and formulation == "arcflow"
            excess_before = None if best is None else best[0] / lmax - float(problem.requests @ lb_exact)
            best = found
        if res.status == "optimal" or formulation != "arcflow" or not improved:
            break
        # a better incumbent prunes more: rebuild only if it shrank the excess markedly
        if best[0] / lmax - float(problem.requests @ lb_exact) > 0.5 * max(excess_before, 0.0):
            break

    if stats.time_limit_hit:
        deterministic = False
        notes.append(f"time limit ({time_limit_s:g} s) reached (solver status {stats.status!r}); {SPEED_NOTE}")
    if best is None:
        raise SolverTimeout(f"{formulation} MILP stopped ({stats.status}) after {time.perf_counter() - t_start:.1f} s "
                            f"without a feasible solution", incumbent=None, gap=None)
    return _finish(full, kept, problem, formulation, best, lb_s, stats, tol, notes, deterministic, strict,
                   t_start, dict(ws_note=ws_note, ws_obj=ws_obj, heuristic=heuristic, mip_rel_gap=mip_rel_gap,
                                 time_limit_s=time_limit_s))


# -- step 7: certificate ------------------------------------------------------------------------------

def _finish(full, kept, problem, formulation, best, lb_s, stats: SolveStats, tol, notes, deterministic, strict,
            t_start, extra) -> MILPSolution:
    obj, placement, routes = best
    solver_bound_s = stats.bound_s
    bound_s = min(max(solver_bound_s, lb_s), obj)      # round-off: a bound never exceeds a feasible value
    gap = rel_gap(obj, bound_s)
    solver_gap = rel_gap(obj, min(solver_bound_s, obj)) if math.isfinite(solver_bound_s) else INF
    stats.gap = solver_gap
    proof = None
    if stats.status == "optimal" or solver_gap <= tol:
        proof = "solver"
    elif rel_gap(obj, min(lb_s, obj)) <= tol:
        proof = "standalone-bound"
    proven = proof is not None
    status = "optimal" if proven else ("time_limit" if stats.time_limit_hit else stats.status)
    placement, routes = _lift(full, kept, placement, routes)
    if len(kept) != full.num_servers:
        if not full.is_feasible(placement, routes):  # pragma: no cover - the reduction is exact
            raise RuntimeError("internal error: the solution on the reachable servers is infeasible for the "
                               "full problem")
        obj = full.objective_s(placement, routes)
    excluded = sorted(set(range(full.num_servers)) - {int(k) for k in kept})
    solution = MILPSolution(
        placement=placement, routes=list(routes), objective_s=float(obj), bound_s=float(bound_s), gap=float(gap),
        status=status, proven_optimal=proven, solve_time_s=time.perf_counter() - t_start, formulation=formulation,
        solver_status=stats.status, solver_bound_s=float(solver_bound_s), solver_gap=float(solver_gap),
        standalone_bound_s=float(lb_s), proof=proof, solver_time_s=stats.solve_s, build_time_s=stats.build_s,
        node_count=stats.node_count, num_vars=stats.num_vars, num_rows=stats.num_constraints, rounds=stats.rounds,
        pruned_hops=stats.pruned_hops, warm_start=extra["ws_note"], warm_start_objective_s=extra["ws_obj"],
        heuristic_objective_s=extra["heuristic"]["objective_s"], heuristic_time_s=extra["heuristic"]["time_s"],
        heuristic_evaluations=extra["heuristic"]["evaluations"], mip_rel_gap=extra["mip_rel_gap"],
        time_limit_s=extra["time_limit_s"], output_tokens=full.output_tokens, total_requests=full.total_requests,
        notes=list(notes), deterministic=deterministic,
        excluded_servers=excluded, stats=stats)
    if strict and not proven:
        raise SolverTimeout(f"{formulation} MILP not proven optimal ({status}): gap {gap:.2%} after "
                            f"{solution.solve_time_s:.1f} s", incumbent=solution, gap=gap)
    return solution


__all__ = ["BPRRInfeasible", "FORMULATIONS", "MAX_LINK_COLUMNS", "MILPSolution", "SolveStats", "link_columns",
           "size_error", "solve_bprr"]

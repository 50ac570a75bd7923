"""CG-BP and CG-BPRR (Conservative-Greedy Block Placement and Request Routing), Algorithm 1 of
arXiv 2512.21884, and the |R| rule of its online adaptation (docs/model.md
§6, §6.4; the authors' ``CG_BP.m``, ``BPRR_heuristic_general_extended.m``; docs/contracts.md §4).

Notation (0-based blocks, per-token seconds): L blocks, s_m weight bytes per block, s_c KV bytes per
session per block, M_j memory, τ_j decode time per block per token, t_cj per-token client↔server
cost, |R| the target number of concurrent sessions ("sessions").

* Step 1: m_j = min(⌊M_j/(s_m + s_c·|R|)⌋, L, GPU cap) (:func:`distllm_env.perf.conservative_block_count`);
  κ_j = ⌊(M_j − s_m·m_j)/(s_c·m_j)⌋ sessions fit through all of j's blocks (κ_j ≥ |R|).
* Step 2: t̃_j = τ_j + max_c t_cj/m_j; dummy time t_0 = max_j t̃_j + 1; C_b = 0, T_b = |R|·t_0.  In
  increasing t̃ order, each server takes — while some block has C_b < |R| — the window containing an
  under-served block with the largest Σ T_b (ties → lowest start), else the window whose sorted
  capacities are lexicographically smallest; then T_b −= (t_0 − t̃_j)·min(max(|R| − C_b, 0), κ_j) and
  C_b += κ_j on the window.  K = the smallest prefix of the order covering every block |R| times.
* Theorem 2: average per-token time ≤ Σ_{k≤K} t̃_k m_k − τ_K(Σ_{k≤K} m_k − L) when ≤ |R| sessions run.
* Step 3 (CG-BPRR): each client's requests all use its cheapest chain under t_cj + τ_j·m_ij.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distllm_env.chains import ChainDAG, HopCost, Route
from distllm_env.errors import PlacementError
from distllm_env.instance import Instance, round_half_up
from distllm_env.offline import OfflineProblem
from distllm_env.perf import conservative_block_count
from distllm_env.placement import CachePolicy, Placement, PlacementResult
from distllm_env.registry import family_delay_s
from distllm_env.scenario.fidelity import scenario_fidelity
from distllm_env.simulator import new_simulation
from distllm_env.workload import Request

from .petals import _check_bool, _check_int, _check_number, _option_error


@dataclass(frozen=True, eq=False)
class CGBPSolution:
    """Result of :func:`cg_bp`.

    ``order`` lists every server by increasing t̃ (servers that host nothing, t̃ = inf, last, in
    index order); ``K`` counts servers of that order; ``bound_per_token_s`` is Theorem 2's bound on
    the average per-token decode time (multiply by l_max for a request, as the MILP's objective
    does)."""

    placement: Placement
    sessions: int
    K: int
    bound_per_token_s: float
    order: tuple[int, ...]
    t_tilde: np.ndarray
    kappa: np.ndarray
    counts: np.ndarray
    capacity: np.ndarray = field(repr=False)   # C_b after the last server

    @property
    def first_k(self) -> tuple[int, ...]:
        """The K servers of Theorem 2 (the fastest prefix of ``order`` covering all blocks)."""
        return self.order[: self.K]


def _problem_arrays(obj) -> tuple[np.ndarray, int, int, int, list]:
    """(memory_bytes, s_m, s_c, L, caps) from an :class:`OfflineProblem` or an :class:`Instance`."""
    caps = [None if c is None else int(c) for c in obj.max_blocks]
    return (np.asarray(obj.memory_bytes, dtype=np.int64), int(obj.block_bytes), int(obj.kv_block_bytes),
            int(obj.num_blocks), caps)


def conservative_counts(problem, sessions: int) -> np.ndarray:
    """CG-BP step 1 for every server: min(⌊M_j/(s_m + s_c·|R|)⌋, L, GPU cap)."""
    mem, s_m, s_c, L, caps = _problem_arrays(problem)
    return np.asarray(conservative_block_count(mem, s_m, s_c, int(sessions), L, caps), dtype=np.int64)


def corollary1_feasible(problem, sessions: int) -> bool:
    """Corollary 1: CG-BP is feasible iff Σ_j min(⌊M_j/(s_m + s_c·|R|)⌋, L) ≥ L (here with each GPU's
    block cap applied, as CG-BP's step 1 applies it), over the servers some client reaches.  Accepts an
    :class:`OfflineProblem` or an :class:`Instance`.  Raises ``ValueError`` for sessions < 1."""
    if int(sessions) < 1:
        raise ValueError(f"sessions must be ≥ 1, got {sessions}")
    counts = conservative_counts(problem, sessions)
    counts[~usable_servers(problem)] = 0          # servers no client reaches host nothing
    return int(counts.sum()) >= int(problem.num_blocks)


def r_max(problem) -> int:
    """The published upper bound on a feasible |R|:
    ⌊(Σ_j M_j − s_m·(L + |V_s|)) / (s_c·(L + |V_s|))⌋ (``R_max`` in the authors' scripts; docs/model.md §6.4),
    with V_s the servers CG-BP may use (:func:`usable_servers`): a server no client reaches is excluded
    from planning, so neither its memory nor its count enters the bound."""
    mem, s_m, s_c, L, _ = _problem_arrays(problem)
    mem = np.asarray(mem)[usable_servers(problem)]
    n = len(mem)
    return int((int(mem.sum()) - s_m * (L + n)) // (s_c * (L + n)))


def usable_servers(problem) -> np.ndarray:
    """Boolean mask (num_servers,) of the servers CG-BP may use: those some client reaches (finite
    t_cj).  Accepts an :class:`OfflineProblem` (clients with requests) or an :class:`Instance`."""
    if isinstance(problem, OfflineProblem):
        return problem.reachable_servers()
    return np.isfinite(np.atleast_2d(problem.token_cost_s)).any(axis=0)


def excluded_note(problem) -> tuple[list[int], list[str]]:
    """(servers excluded from planning because no client reaches them, the one-line note to show)."""
    out = np.flatnonzero(~usable_servers(problem)).tolist()
    if not out:
        return [], []
    return out, [f"server(s) {out} are unreachable from every client and were excluded from planning "
                 f"(they host nothing)"]


def tilde_order(problem, sessions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CG-BP's step 1 and server order: (m_j, t̃_j, order).  t̃_j = τ_j + max_c t_cj / m_j is the
    amortised per-block time (inf for a server with m_j = 0), the maximum over the clients that reach
    j; a server no client reaches gets m_j = 0 (:func:`usable_servers`).  ``order`` sorts servers by
    increasing t̃, ties and servers hosting nothing in index order (a stable sort, as MATLAB's
    ``sort``)."""
    m = conservative_counts(problem, int(sessions))
    m[~usable_servers(problem)] = 0                                     # no client reaches it: host nothing
    hosting = m > 0
    tau = np.asarray(problem.tau_s, dtype=float)
    t = np.atleast_2d(problem.token_cost_s)
    t_star = np.max(np.where(np.isfinite(t), t, -np.inf), axis=0)        # worst client that reaches it
    t_tilde = np.full(len(m), np.inf)
    t_tilde[hosting] = tau[hosting] + t_star[hosting] / m[hosting]
    return m, t_tilde, np.argsort(t_tilde, kind="stable")


def cg_bp(problem: OfflineProblem, sessions: int) -> CGBPSolution:
    """CG-BP (steps 1–2 of Algorithm 1) for ``sessions`` = |R| concurrent sessions.

    Raises :class:`PlacementError` naming the under-served blocks when the servers cannot cover every
    block |R| times (Corollary 1 fails)."""
    R = int(sessions)
    if R < 1:
        raise ValueError(f"sessions must be ≥ 1, got {sessions}")
    mem, s_m, s_c, L, _ = _problem_arrays(problem)
    n = len(mem)
    m, t_tilde, order = tilde_order(problem, R)
    hosting = m > 0
    tau = np.asarray(problem.tau_s, dtype=float)
    kappa = np.zeros(n, dtype=np.int64)
    kappa[hosting] = (mem[hosting] - s_m * m[hosting]) // (s_c * m[hosting])
    if not np.any(hosting):
        raise PlacementError(f"CG-BP: no server can host even one block with KV room for {R} sessions "
                             f"(s_m + s_c·|R| = {(s_m + s_c * R) / 1e9:.3f} GB exceeds every server's memory); "
                             "blocks 0-%d stay under-served" % (L - 1), ((0, L - 1),))
    t0 = float(np.max(t_tilde[hosting])) + 1.0                             # the dummy server's time
    C = np.zeros(L, dtype=np.int64)
    T = np.full(L, R * t0)
    starts = np.zeros(n, dtype=np.int64)
    K = None
    for pos, j in enumerate(order):
        mj = int(m[j])
        if mj == 0:
            continue
        if np.any(C < R):
            under = (C < R).astype(np.int64)
            has_under = np.convolve(under, np.ones(mj, dtype=np.int64), mode="valid") > 0
            sums = np.convolve(T, np.ones(mj), mode="valid")
            sums = np.where(has_under, sums, -np.inf)
            a = int(np.argmax(sums))                                     # first maximum: lowest start
        else:
            windows = np.sort(np.lib.stride_tricks.sliding_window_view(C, mj), axis=1)
            a = int(np.lexsort(windows.T[::-1])[0])                      # lexicographic min, lowest start
        starts[j] = a
        w = slice(a, a + mj)
        T[w] -= (t0 - t_tilde[j]) * np.minimum(np.maximum(R - C[w], 0), kappa[j])
        C[w] += kappa[j]
        if K is None and np.all(C >= R):
            K = pos + 1
    if K is None:
        bad = np.flatnonzero(C < R)
        ranges, run = [], [int(bad[0]), int(bad[0])]
        for b in bad[1:]:
            if b == run[1] + 1:
                run[1] = int(b)
            else:
                ranges.append(tuple(run))
                run = [int(b), int(b)]
        ranges.append(tuple(run))
        text = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ranges)
        raise PlacementError(
            f"CG-BP infeasible for |R| = {R}: blocks {text} stay under-served (capacity < {R} sessions); the "
            f"conservative counts sum to {int(m.sum())} blocks for L = {L} (Corollary 1 needs ≥ L)", tuple(ranges))
    placement = Placement(tuple(int(s) if c > 0 else 0 for s, c in zip(starts, m)), tuple(int(c) for c in m), L)
    first = order[:K]
    bound = float(np.sum(t_tilde[first] * m[first]) - tau[order[K - 1]] * (int(m[first].sum()) - L))
    return CGBPSolution(placement=placement, sessions=R, K=int(K), bound_per_token_s=bound,
                        order=tuple(int(j) for j in order), t_tilde=t_tilde, kappa=kappa, counts=m, capacity=C)


def cg_bprr(problem: OfflineProblem, sessions: int | None = None
            ) -> tuple[CGBPSolution, list[tuple[int, Route]], float]:
    """CG-BPRR: CG-BP for ``sessions`` (default: the problem's total number of requests), then
    step 3 — every request of client c on c's cheapest chain under the per-token decode cost
    t_cj + τ_j·m_ij (shortest path on the core's chain DAG).

    Returns (solution, [(client, route)] — one entry per request, clients in order —, objective_s
    = ``problem.objective_s`` = l_max · Σ_r per-token cost)."""
    R = problem.total_requests if sessions is None else int(sessions)
    sol = cg_bp(problem, R)
    dag = ChainDAG(sol.placement)
    tau = np.asarray(problem.tau_s, dtype=float)
    routes: list[tuple[int, Route]] = []
    for c in range(problem.num_clients):
        k = int(problem.requests[c])
        if k <= 0:
            continue
        route, _ = dag.shortest(HopCost(fixed_s=np.asarray(problem.token_cost_s[c], dtype=float), per_block_s=tau))
        routes += [(c, route)] * k
    return sol, routes, problem.objective_s(sol.placement, routes)


# --------------------------------------------------------------------------------------------------
# the |R| rule
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionsRule:
    """How :func:`choose_sessions` arrived at |R| (for diagnostics)."""

    sessions: int
    t1_s: float
    arrival_rate_per_s: float
    allocation_delay_s: float
    raw: int
    r_max: int
    corollary1_lowered: int


def lone_request_time_s(instance: Instance, allocation_delay_s: float = 0.0) -> float:
    """T₁: completion time of a lone request under CG-BPRR planned for |R| = 1, measured with the core
    simulator (prefill, the initial delay and ``allocation_delay_s`` included; no waiting).

    The request has the scenario's longest output l_max (``max_output_tokens``: with unknown lengths
    the longest declared one, docs/contracts.md §3) and the longest prompt that fits with it in
    ``max_session_tokens`` (so with unknown lengths it declares exactly ``max_length``), and is routed on its cheapest
    chain under the prefill-aware static cost (what WS-RR and the published
    ``BPRR_heuristic_general_extended.m`` pick for a lone request).  With several clients T₁ is the
    client-weight average of their lone-request times (the mean time in system of Little's law)."""
    sc = instance.scenario
    sol = cg_bp(OfflineProblem.from_instance(instance, 1), 1)
    result = PlacementResult(sol.placement, CachePolicy(), {})
    times, weights = [], []
    probe_prompt = max(min(sc.max_prompt_tokens, sc.max_session_tokens - sc.max_output_tokens), 1)
    for c, client in enumerate(instance.clients):
        req = Request(id=0, client=c, arrival_s=0.0, prompt_tokens=probe_prompt, output_tokens=sc.max_output_tokens)
        sim = new_simulation(instance, result, [req], reservation=sc.simulator.reservation,
                             backoff=sc.simulator.backoff, allocation_delay_s=allocation_delay_s,
                             churn=False)      # a planning probe: no server fails under it
        req = sim.next_request()
        route, _ = sim.view.shortest(c, sim.view.static_cost(req))
        sim.commit(req, route)
        sim.next_request()                 # run to the end (the live engine finishes sessions by events)
        rec = sim.finished_records()[0]
        times.append(rec.completion_s - rec.arrival_s)
        weights.append(client.weight)
    return float(np.average(times, weights=weights))


def sessions_rule(instance: Instance, arrival_rate_per_s: float | None = None,
                  allocation_delay_s: float | None = None,
                  t1_includes_allocation_delay: bool | None = None) -> SessionsRule:
    """The |R| rule of docs/contracts.md §4 (docs/model.md §6.4, the authors' sweep scripts) with its
    intermediate values: |R| = min(round-half-up(λT₁ + √(λT₁)), R_max) — the mean plus one standard
    deviation of a Poisson(λT₁) number in system — then lowered until Corollary 1 holds.

    λ defaults to the scenario's ``workload.arrival_rate_per_s`` and the allocation delay to the
    scenario's delay for the ``proposed`` family.  ``t1_includes_allocation_delay`` (default: the
    scenario's ``fidelity.t1_allocation_delay``, true under ``contracts``) says whether T₁ counts that
    delay; the authors' published scripts add only the initial delay (``fidelity: authors-code``,
    docs/fidelity.md reading 2).

    Raises:
        ValueError: the arrival rate is not a finite number > 0.
        PlacementError: Corollary 1 fails even at |R| = 1 (CG-BP is infeasible)."""
    sc = instance.scenario
    lam = sc.workload.arrival_rate_per_s if arrival_rate_per_s is None else float(arrival_rate_per_s)
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"arrival_rate_per_s must be a positive number, got {arrival_rate_per_s!r}")
    if allocation_delay_s is None:
        allocation_delay_s = family_delay_s(sc.simulator.allocation_delay_s, "proposed")
    if t1_includes_allocation_delay is None:
        t1_includes_allocation_delay = scenario_fidelity(sc).t1_allocation_delay
    t1 = lone_request_time_s(instance, allocation_delay_s if t1_includes_allocation_delay else 0.0)
    x = lam * t1
    raw = round_half_up(x + math.sqrt(x))
    rmax = r_max(instance)
    R = max(min(raw, rmax), 1)
    start = R
    while R > 1 and not corollary1_feasible(instance, R):
        R -= 1
    if not corollary1_feasible(instance, R):
        raise PlacementError("CG-BP is infeasible even for one session (Corollary 1 fails at |R| = 1)")
    return SessionsRule(sessions=R, t1_s=t1, arrival_rate_per_s=lam,
                        allocation_delay_s=float(allocation_delay_s) if t1_includes_allocation_delay else 0.0,
                        raw=int(raw), r_max=rmax, corollary1_lowered=start - R)


def choose_sessions(instance: Instance, arrival_rate_per_s: float | None = None,
                    allocation_delay_s: float | None = None) -> int:
    """|R| by the rule of docs/contracts.md §4 (see :func:`sessions_rule`)."""
    return sessions_rule(instance, arrival_rate_per_s, allocation_delay_s).sessions


def _sessions_option(policy: str, value) -> int | str:
    if isinstance(value, str):
        if value != "auto":
            raise _option_error(policy, "sessions", "a positive integer or 'auto'", value)
        return value
    return _check_int(policy, "sessions", value, 1)


def resolve_sessions(instance: Instance, sessions, arrival_rate_per_s, allocation_delay_s,
                     t1_includes_allocation_delay: bool | None = None) -> tuple[int, dict]:
    """``sessions`` option → (|R|, diagnostics)."""
    if sessions != "auto":
        return int(sessions), {"sessions_rule": "given"}
    rule = sessions_rule(instance, arrival_rate_per_s, allocation_delay_s, t1_includes_allocation_delay)
    return rule.sessions, {"sessions_rule": "auto", "t1_s": rule.t1_s, "sessions_arrival_rate_per_s":
                           rule.arrival_rate_per_s, "sessions_allocation_delay_s": rule.allocation_delay_s,
                           "sessions_raw": rule.raw, "r_max": rule.r_max,
                           "sessions_lowered_for_corollary1": rule.corollary1_lowered}


class CGBPSessionsOptions:
    """The ``sessions`` / ``arrival_rate_per_s`` / ``allocation_delay_s`` options of CG-BP (the |R|
    that fixes CG-BP's counts and order), shared by ``cg-bp`` and the ablations that borrow its |R|."""

    name: str

    def _init_sessions(self, sessions, arrival_rate_per_s, allocation_delay_s,
                       t1_includes_allocation_delay: bool | None = None) -> None:
        self.sessions = _sessions_option(self.name, sessions)
        self.t1_includes_allocation_delay = (
            None if t1_includes_allocation_delay is None
            else _check_bool(self.name, "t1_includes_allocation_delay", t1_includes_allocation_delay))
        self.arrival_rate_per_s = (None if arrival_rate_per_s is None else
                                   _check_number(self.name, "arrival_rate_per_s", arrival_rate_per_s,
                                                 minimum=0.0, exclusive=True))
        self.allocation_delay_s = (None if allocation_delay_s is None else
                                   _check_number(self.name, "allocation_delay_s", allocation_delay_s, minimum=0.0))

    def _sessions(self, instance: Instance) -> tuple[int, dict]:
        R, diag = resolve_sessions(instance, self.sessions, self.arrival_rate_per_s, self.allocation_delay_s,
                                   getattr(self, "t1_includes_allocation_delay", None))
        diag["sessions"] = R
        return R, diag


class CGBPPlacement(CGBPSessionsOptions):
    """CG-BP as a placement policy (``cg-bp``, family ``proposed``), cache policy ``leftover``.

    Options: ``sessions`` (int or ``"auto"``: the |R| rule with the scenario's λ and its allocation
    delay for family ``proposed``), ``arrival_rate_per_s`` and ``allocation_delay_s`` (override the
    λ and delay the rule uses, e.g. for Table III's λ = 0.5 column simulated with λ = 0.1 arrivals),
    ``t1_includes_allocation_delay`` (bool; default None = the scenario's ``fidelity``: true under
    ``contracts``, false under ``authors-code``, docs/fidelity.md reading 2)."""

    name = "cg-bp"
    family = "proposed"

    def __init__(self, sessions: int | str = "auto", arrival_rate_per_s: float | None = None,
                 allocation_delay_s: float | None = None, t1_includes_allocation_delay: bool | None = None):
        self._init_sessions(sessions, arrival_rate_per_s, allocation_delay_s, t1_includes_allocation_delay)

    def solve(self, instance: Instance) -> tuple[CGBPSolution, dict[str, Any]]:
        R, diag = self._sessions(instance)
        problem = OfflineProblem.from_instance(instance, 1)
        return cg_bp(problem, R), diag

    def place(self, instance: Instance, rng: np.random.Generator) -> PlacementResult:
        sol, diag = self.solve(instance)
        diag.update(sessions=sol.sessions, K=sol.K, theorem2_bound_per_token_s=sol.bound_per_token_s,
                    corollary1=corollary1_feasible(instance, sol.sessions), order=list(sol.order),
                    t_tilde_s=[float(x) for x in sol.t_tilde], kappa=[int(k) for k in sol.kappa])
        excluded, notes = excluded_note(instance)
        if excluded:
            diag["excluded_servers"] = excluded
            diag["notes"] = list(diag.get("notes", ())) + notes
        return PlacementResult(sol.placement, CachePolicy(), diag)

    def place_joining(self, server: int, count: int, view, rng: np.random.Generator) -> int:
        """Online rule for a (re)joining server (churn; docs/baselines.md "Online re-placement"):
        CG-BP's greedy window rule once every block is served (Algorithm 1 of arXiv 2512.21884):
        the start whose window's sorted capacities C_b = Σ κ_k over the servers k up now that host b
        is lexicographically smallest, ties → lowest start; κ_k = ⌊KV capacity_k / (s_c·m_k)⌋
        sessions.  Returns the first of the server's ``count`` blocks."""
        p = view.placement
        C = np.zeros(p.num_blocks, dtype=np.int64)
        s_c = int(view.instance.kv_block_bytes)
        for k, (a, m) in enumerate(zip(p.starts, p.counts)):
            if m > 0 and k != server:
                C[a:a + m] += int(view.capacity_bytes[k]) // (s_c * m)
        windows = np.sort(np.lib.stride_tricks.sliding_window_view(C, count), axis=1)
        return int(np.lexsort(windows.T[::-1])[0])


__all__ = ["CGBPPlacement", "CGBPSessionsOptions", "CGBPSolution", "SessionsRule", "cg_bp", "cg_bprr", "choose_sessions",
           "conservative_counts", "corollary1_feasible", "excluded_note", "lone_request_time_s", "r_max", "resolve_sessions",
           "sessions_rule", "tilde_order", "usable_servers"]

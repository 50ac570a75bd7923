"""The BPRR MILP and the routing-only ILP (19) of arXiv 2512.21884, solved with HiGHS: the policies
and the public entry point of the MILP family.

Offline problem (:class:`distllm_env.offline.OfflineProblem`, docs/milp.md): place contiguous block
ranges on servers and route a fixed set of concurrent requests, each on one Lemma-1-feasible chain,
minimising the decode-phase cost

    l_max · Σ_r Σ_{(i,j) ∈ p_r} (t_{c_r j} + τ_j·m_ij)        (arXiv 2512.21884 eq. (13a))

subject to s_m·m_j + s_c·Σ_r k_rj ≤ M_j per server (eq. (13b)) and every GPU's block cap (MIG = 4).

Where things live:

* :mod:`.milp_bprr` — :func:`solve_bprr` (named steps, :class:`SolveStats`), :class:`MILPSolution`,
  :class:`BPRRInfeasible`;
* :mod:`.milp_arcflow` (default formulation), :mod:`.milp_link` (``literal`` and ``rlt``),
  :mod:`.milp_bounds` (stand-alone bound), :mod:`.milp_heuristic` (local search);
* :mod:`.milp_routing` — the routing-only ILP (19) and the ``rr-ilp`` router;
* :mod:`.milp_highs` — the HiGHS front end (quiet, single-threaded, seeded);
* :mod:`.milp_common` — argument checks, |R| caps, the deadline.

This module defines the placement policy :class:`MILPPlacement` (``milp``, family ``proposed``) and
:func:`split_sessions`, and re-exports the names above, so ``distllm_env.baselines.milp:MILPPlacement``
and ``distllm_env.baselines.milp:RoutingILPRouter`` keep working.
"""

from __future__ import annotations

import math

import numpy as np

from distllm_env.errors import ScenarioError
from distllm_env.instance import Instance
from distllm_env.offline import OfflineProblem
from distllm_env.placement import CachePolicy, PlacementResult

from .milp_bprr import FORMULATIONS, BPRRInfeasible, MILPSolution, SolveStats, size_error, solve_bprr
from .milp_common import MAX_LINK_REQUESTS, MAX_REQUESTS, is_int, is_number, option_error
from .milp_routing import RoutingILPRouter, RoutingSolution, solve_routing_ilp


def split_sessions(instance: Instance, sessions: int) -> list[int]:
    """Spread ``sessions`` planned requests over the instance's clients in proportion to their
    ``weight`` (largest remainder), at least one per client so that every client gets a chain.
    Raises ScenarioError (path ``policy_defaults.options.milp.sessions``) if ``sessions`` is below
    the number of clients."""
    C = instance.num_clients
    if sessions < C:
        raise option_error("milp", "sessions", f"at least the number of clients ({C}) so every client gets a chain",
                           sessions)
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

    Options (``policy_defaults.options.milp``; bad values raise ScenarioError with the path
    ``policy_defaults.options.milp.<option>``): ``sessions`` — the number of concurrent requests to
    plan for (an integer 1 … :data:`~.milp_common.MAX_REQUESTS`, at most
    :data:`~.milp_common.MAX_LINK_REQUESTS` for the link formulations, or ``"auto"`` = the |R| rule
    of docs/contracts.md §4 via :func:`distllm_env.baselines.cg_bp.choose_sessions`), spread over
    the clients by weight (:func:`split_sessions`); ``formulation`` (``arcflow`` | ``rlt`` |
    ``literal``); ``time_limit_s`` (wall clock of the whole placement, seconds); ``mip_rel_gap``
    ([0, 1)); ``strict`` (raise :class:`~distllm_env.errors.SolverTimeout` instead of returning an
    unproven placement); ``warm_start``; ``random_seed`` (HiGHS's seed, an integer ≥ 0).
    Diagnostics: status, objective_s, bound_s, gap, proven_optimal, formulation, solve_time_s,
    deterministic, notes (and more, see :meth:`MILPSolution.diagnostics`)."""

    name = "milp"
    family = "proposed"

    def __init__(self, sessions: int | str = "auto", formulation: str = "arcflow", time_limit_s: float = 60.0,
                 mip_rel_gap: float = 1e-4, strict: bool = False, warm_start: bool = True, random_seed: int = 0):
        """Options as in docs/milp.md (``formulation``, ``time_limit_s``, ``mip_rel_gap``, ``random_seed``,
        ``sessions``, flags).

        Raises:
            ScenarioError: an option of the wrong type or out of range (path
                ``policy_defaults.options.milp.<option>``)."""
        if not (isinstance(formulation, str) and formulation in FORMULATIONS):
            raise option_error(self.name, "formulation", f"one of {list(FORMULATIONS)}", formulation)
        cap = MAX_REQUESTS if formulation == "arcflow" else MAX_LINK_REQUESTS
        if isinstance(sessions, str):
            if sessions != "auto":
                raise option_error(self.name, "sessions", f"an integer 1 … {cap} or 'auto'", sessions)
        elif not is_int(sessions) or not 1 <= sessions <= cap:
            raise option_error(self.name, "sessions", f"an integer 1 … {cap} or 'auto' (formulation {formulation!r})",
                               sessions)
        if not (is_number(time_limit_s) and math.isfinite(time_limit_s) and time_limit_s > 0):
            raise option_error(self.name, "time_limit_s", "a positive number of seconds", time_limit_s)
        if not (is_number(mip_rel_gap) and 0 <= mip_rel_gap < 1):
            raise option_error(self.name, "mip_rel_gap", "a number in [0, 1)", mip_rel_gap)
        for opt, value in (("strict", strict), ("warm_start", warm_start)):
            if not isinstance(value, (bool, np.bool_)):
                raise option_error(self.name, opt, "true or false", value)
        if not is_int(random_seed) or random_seed < 0 or random_seed > 2**31 - 1:
            raise option_error(self.name, "random_seed", "an integer 0 … 2147483647", random_seed)
        self.sessions = sessions if isinstance(sessions, str) else int(sessions)
        self.formulation = formulation
        self.time_limit_s = float(time_limit_s)
        self.mip_rel_gap = float(mip_rel_gap)
        self.strict = bool(strict)
        self.warm_start = bool(warm_start)
        self.random_seed = int(random_seed)

    def resolve_sessions(self, instance: Instance) -> int:
        """|R|: the ``sessions`` option, or the |R| rule (raised to the number of clients) for
        ``"auto"``.  Raises ScenarioError (path ``policy_defaults.options.milp.sessions``) when the
        rule's |R| exceeds the formulation's cap."""
        if self.sessions != "auto":
            return int(self.sessions)
        from .cg_bp import choose_sessions
        sessions = max(int(choose_sessions(instance)), instance.num_clients)
        cap = MAX_REQUESTS if self.formulation == "arcflow" else MAX_LINK_REQUESTS
        if sessions > cap:
            raise option_error(self.name, "sessions", f"an integer ≤ {cap} for formulation {self.formulation!r} "
                                                      f"('auto' chose {sessions})", "auto")
        return sessions

    def problem(self, instance: Instance) -> OfflineProblem:
        """The offline problem this policy solves for ``instance`` (|R| from :meth:`resolve_sessions`)."""
        return OfflineProblem.from_instance(instance, split_sessions(instance, self.resolve_sessions(instance)))

    def place(self, instance: Instance, rng: np.random.Generator) -> PlacementResult:
        """Solve the MILP (:func:`solve_bprr`).  Raises :class:`BPRRInfeasible`,
        :class:`~distllm_env.errors.SolverTimeout` (no solution in time, or ``strict``) and
        ScenarioError (an option the instance makes invalid)."""
        problem = self.problem(instance)
        too_big = size_error(problem, self.formulation)
        if too_big:
            raise ScenarioError(f"policy_defaults.options.{self.name}.sessions", too_big)
        sol = solve_bprr(problem, self.formulation, time_limit_s=self.time_limit_s, mip_rel_gap=self.mip_rel_gap,
                         warm_start=self.warm_start, strict=self.strict, random_seed=self.random_seed)
        diag = sol.diagnostics()
        diag["sessions"] = problem.total_requests
        diag["sessions_per_client"] = problem.requests.tolist()
        return PlacementResult(sol.placement, CachePolicy(), diag)


__all__ = ["BPRRInfeasible", "FORMULATIONS", "MAX_LINK_REQUESTS", "MAX_REQUESTS", "MILPPlacement", "MILPSolution",
           "RoutingILPRouter", "RoutingSolution", "SolveStats", "solve_bprr", "solve_routing_ilp", "split_sessions"]

"""What :func:`.milp_bprr.solve_bprr` returns or raises: :class:`MILPSolution` (the solution and its
certificate), :class:`SolveStats` (where the time went, what HiGHS saw) and :class:`BPRRInfeasible`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from distllm_env.chains import Route
from distllm_env.errors import PlacementError
from distllm_env.placement import Placement

from .milp_common import INF


class BPRRInfeasible(PlacementError):
    """The offline instance has no feasible solution.  ``cause`` is ``"no_chain"`` (some client has no
    chain under any placement) or ``"memory"`` (the MILP is infeasible: the requests' KV caches
    cannot all be held at once)."""

    def __init__(self, message: str, cause: str, client: int | None = None):
        self.cause = cause
        self.client = client
        super().__init__(message)


@dataclass
class SolveStats:
    """Where the time went and what HiGHS saw.  Times in seconds of wall clock: ``standalone_s``
    (bound), ``warm_start_s`` (CG-BPRR), ``heuristic_s`` (local search), ``build_s`` (model building,
    all rounds), ``solve_s`` (HiGHS, all rounds).  ``status``: HiGHS's last status (``not_run`` when
    HiGHS was not needed, ``build_time_limit`` when building hit the deadline); ``gap``: HiGHS's own
    relative gap; ``num_vars``/``num_constraints``: the last model's size."""

    standalone_s: float = 0.0
    warm_start_s: float = 0.0
    heuristic_s: float = 0.0
    build_s: float = 0.0
    solve_s: float = 0.0
    status: str = "not_run"
    bound_s: float = -INF
    gap: float = INF
    num_vars: int = 0
    num_constraints: int = 0
    node_count: int = 0
    rounds: int = 0
    pruned_hops: int = 0
    time_limit_hit: bool = False


@dataclass
class Certificate:
    """Routes with the certificate of the ILP that chose them: ``objective_s`` (s), the best proven
    lower bound ``bound_s``, the relative ``gap`` = (objective − bound)/objective, HiGHS's ``status``,
    ``proven_optimal`` and the wall time ``solve_time_s`` of the whole call."""

    routes: list[tuple[int, Route]]
    objective_s: float
    bound_s: float
    gap: float
    status: str
    proven_optimal: bool
    solve_time_s: float


@dataclass
class MILPSolution(Certificate):
    """A BPRR solution (placement and routes) with its certificate.

    ``objective_s`` = l_max·Σ_r per-token decode cost (recomputed by ``problem.objective_s``);
    ``bound_s`` is the best proven lower bound (the larger of HiGHS's dual bound and the stand-alone
    bound); ``gap`` = (objective − bound)/objective; ``proven_optimal`` iff gap ≤ the requested
    ``mip_rel_gap`` (``proof`` says which bound proved it).  ``solver_bound_s``/``solver_gap`` are
    what HiGHS itself reported for its formulation.  ``solve_time_s`` is the total wall time of the
    call; ``solver_time_s`` HiGHS's part.  ``notes`` lists what the caller should know (servers left
    out, a clock that stopped the search); ``deterministic`` is False when a clock stopped it."""

    placement: Placement
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
    notes: list[str] = field(default_factory=list)
    deterministic: bool = True
    excluded_servers: list[int] = field(default_factory=list)
    stats: SolveStats = field(default_factory=SolveStats)

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
            "build_time_s": self.build_time_s,
            "solver_status": self.solver_status, "solver_bound_s": self.solver_bound_s, "solver_gap": self.solver_gap,
            "standalone_bound_s": self.standalone_bound_s, "proof": self.proof, "node_count": self.node_count,
            "num_vars": self.num_vars, "num_rows": self.num_rows, "rounds": self.rounds,
            "pruned_hops": self.pruned_hops, "warm_start": self.warm_start,
            "warm_start_objective_s": self.warm_start_objective_s, "heuristic_objective_s": self.heuristic_objective_s,
            "heuristic_time_s": self.heuristic_time_s, "heuristic_evaluations": self.heuristic_evaluations,
            "mip_rel_gap": self.mip_rel_gap,
            "time_limit_s": self.time_limit_s, "per_token_s": self.per_token_s,
            "deterministic": self.deterministic, "excluded_servers": list(self.excluded_servers),
            "notes": list(self.notes), "stats": asdict(self.stats),
        }


__all__ = ["BPRRInfeasible", "Certificate", "MILPSolution", "SolveStats"]

"""A thin matrix-form front end to HiGHS (``highspy``) for the BPRR models of :mod:`.milp`.

Models are built column by column (:meth:`MIPModel.add_vars`) and row by row in vectorised batches
(:meth:`MIPModel.add_rows`), handed to HiGHS in one ``passModel`` call as a column-wise sparse
matrix, optionally seeded with a starting solution (``setSolution``), and solved under a wall-clock
time limit and a relative gap target.  :class:`MIPResult` carries what every solver-backed baseline
must report (reference gym_ecosystem.md §6): solution, objective, dual bound, gap, status and wall
time.  HiGHS is open source (MIT); no commercial solver is used anywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

try:  # highspy is a core dependency; the import error is reported when a model is solved
    import highspy
except ImportError:  # pragma: no cover - exercised only in broken installations
    highspy = None

INF = float("inf")


@dataclass
class MIPResult:
    """Outcome of one HiGHS run.

    ``status`` is HiGHS's model status in lower case without the ``k`` prefix (``optimal``,
    ``infeasible``, ``time_limit``, …); ``has_solution`` says whether ``x`` holds a feasible
    incumbent; ``objective`` and ``bound`` are in the model's own objective units; ``gap`` is HiGHS's
    relative gap (objective − bound) / |objective|."""

    status: str
    has_solution: bool
    x: np.ndarray | None
    objective: float
    bound: float
    gap: float
    solve_time_s: float
    node_count: int
    num_vars: int
    num_rows: int
    start_accepted: bool | None


class MIPModel:
    """Minimise c·x subject to row_lo ≤ A x ≤ row_hi, lb ≤ x ≤ ub, x_i integer where flagged."""

    def __init__(self):
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._cost: list[np.ndarray] = []
        self._int: list[np.ndarray] = []
        self.num_vars = 0
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._row_lo: list[np.ndarray] = []
        self._row_hi: list[np.ndarray] = []
        self.num_rows = 0

    def add_vars(self, n: int, lb=0.0, ub=INF, cost=0.0, integer: bool = False) -> np.ndarray:
        """Add ``n`` variables; returns their column indices."""
        n = int(n)
        idx = np.arange(self.num_vars, self.num_vars + n, dtype=np.int64)
        self._lb.append(np.broadcast_to(np.asarray(lb, dtype=float), (n,)).copy())
        self._ub.append(np.broadcast_to(np.asarray(ub, dtype=float), (n,)).copy())
        self._cost.append(np.broadcast_to(np.asarray(cost, dtype=float), (n,)).copy())
        self._int.append(np.full(n, bool(integer)))
        self.num_vars += n
        return idx

    def add_rows(self, row, col, val, lo, hi) -> np.ndarray:
        """Add ``len(lo)`` rows.  ``row`` holds the 0-based index of each non-zero *within this batch*,
        ``col`` its column and ``val`` its coefficient; ``lo``/``hi`` are the row bounds (±inf for
        one-sided rows).  Duplicate (row, col) entries are summed.  Returns the new rows' indices."""
        lo = np.atleast_1d(np.asarray(lo, dtype=float))
        hi = np.broadcast_to(np.asarray(hi, dtype=float), lo.shape).copy()
        n = len(lo)
        row = np.asarray(row, dtype=np.int64)
        col = np.asarray(col, dtype=np.int64)
        val = np.broadcast_to(np.asarray(val, dtype=float), row.shape).copy()
        if row.size and (row.min() < 0 or row.max() >= n):
            raise ValueError("row index outside the batch")
        if col.size and (col.min() < 0 or col.max() >= self.num_vars):
            raise ValueError("column index refers to a variable that does not exist")
        self._rows.append(row + self.num_rows)
        self._cols.append(col)
        self._vals.append(val)
        self._row_lo.append(lo)
        self._row_hi.append(hi)
        idx = np.arange(self.num_rows, self.num_rows + n, dtype=np.int64)
        self.num_rows += n
        return idx

    def add_row(self, cols, vals, lo=-INF, hi=INF) -> int:
        cols = np.asarray(cols, dtype=np.int64)
        return int(self.add_rows(np.zeros(len(cols), dtype=np.int64), cols, vals, [lo], [hi])[0])

    def set_cost(self, cost) -> None:
        """Replace the whole objective vector (one entry per variable added so far)."""
        cost = np.asarray(cost, dtype=float)
        if cost.shape != (self.num_vars,):
            raise ValueError(f"cost must have {self.num_vars} entries, got {cost.shape}")
        self._cost = [cost.copy()]
        self._lb = [np.concatenate(self._lb)] if self._lb else []
        self._ub = [np.concatenate(self._ub)] if self._ub else []
        self._int = [np.concatenate(self._int)] if self._int else []

    # -- solving -------------------------------------------------------------------------------------
    def _arrays(self):
        cat = lambda parts, dt=float: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
        lb, ub, cost, integer = cat(self._lb), cat(self._ub), cat(self._cost), cat(self._int, bool)
        A = sp.csc_matrix((cat(self._vals), (cat(self._rows, np.int64), cat(self._cols, np.int64))),
                          shape=(self.num_rows, self.num_vars))
        A.sum_duplicates()
        return lb, ub, cost, integer, A, cat(self._row_lo), cat(self._row_hi)

    def evaluate(self, x: np.ndarray, tol: float = 1e-6) -> tuple[float, float]:
        """Objective value of ``x`` and its largest bound / row violation (for checking starts)."""
        lb, ub, cost, integer, A, lo, hi = self._arrays()
        ax = A @ x
        viol = max(0.0, float(np.max(lb - x, initial=0)), float(np.max(x - ub, initial=0)),
                   float(np.max(lo - ax, initial=0)), float(np.max(ax - hi, initial=0)),
                   float(np.max(np.abs(x[integer] - np.round(x[integer])), initial=0)))
        return float(cost @ x), viol

    def solve(self, time_limit_s: float | None = None, mip_rel_gap: float = 1e-4,
              start: np.ndarray | None = None, random_seed: int = 0, log: bool = False,
              relax: bool = False) -> MIPResult:
        """Solve with HiGHS.  ``start`` (a full vector of values) is offered as the first incumbent;
        ``relax`` drops integrality (the LP relaxation, whose optimum is the root bound before cuts)."""
        if highspy is None:  # pragma: no cover
            raise ImportError("highspy is required for the MILP baselines (pip install highspy)")
        lb, ub, cost, integer, A, row_lo, row_hi = self._arrays()
        if relax:
            integer = np.zeros_like(integer)
            start = None
        h = highspy.Highs()
        h.setOptionValue("output_flag", bool(log))
        if time_limit_s is not None:
            h.setOptionValue("time_limit", float(max(time_limit_s, 0.01)))
        h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
        h.setOptionValue("random_seed", int(random_seed))
        lp = highspy.HighsLp()
        lp.num_col_ = self.num_vars
        lp.num_row_ = self.num_rows
        lp.col_cost_ = cost
        lp.col_lower_ = lb
        lp.col_upper_ = ub
        lp.row_lower_ = row_lo
        lp.row_upper_ = row_hi
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr.astype(np.int32)
        lp.a_matrix_.index_ = A.indices.astype(np.int32)
        lp.a_matrix_.value_ = A.data.astype(float)
        if integer.any():
            lp.integrality_ = [highspy.HighsVarType.kInteger if f else highspy.HighsVarType.kContinuous
                               for f in integer]
        t0 = time.perf_counter()
        h.passModel(lp)
        accepted = None
        if start is not None:
            sol = highspy.HighsSolution()
            sol.col_value = [float(v) for v in start]
            sol.value_valid = True
            accepted = h.setSolution(sol) == highspy.HighsStatus.kOk
        h.run()
        elapsed = time.perf_counter() - t0
        status = h.modelStatusToString(h.getModelStatus())
        model_status = h.getModelStatus()
        info = h.getInfo()
        has_solution = int(info.primal_solution_status) == 2
        x = np.asarray(h.getSolution().col_value, dtype=float) if has_solution else None
        name = {
            highspy.HighsModelStatus.kOptimal: "optimal",
            highspy.HighsModelStatus.kInfeasible: "infeasible",
            highspy.HighsModelStatus.kUnboundedOrInfeasible: "infeasible",
            highspy.HighsModelStatus.kUnbounded: "unbounded",
            highspy.HighsModelStatus.kTimeLimit: "time_limit",
            highspy.HighsModelStatus.kIterationLimit: "iteration_limit",
            highspy.HighsModelStatus.kSolutionLimit: "solution_limit",
            highspy.HighsModelStatus.kInterrupt: "interrupted",
            highspy.HighsModelStatus.kMemoryLimit: "memory_limit",
        }.get(model_status, status.lower().replace(" ", "_"))
        obj = float(info.objective_function_value) if has_solution else INF
        bound = float(info.mip_dual_bound) if integer.any() else obj
        gap = float(info.mip_gap) if integer.any() and has_solution else (0.0 if has_solution else INF)
        return MIPResult(status=name, has_solution=has_solution, x=x, objective=obj, bound=bound, gap=gap,
                         solve_time_s=elapsed, node_count=int(info.mip_node_count) if integer.any() else 0,
                         num_vars=self.num_vars, num_rows=self.num_rows, start_accepted=accepted)


__all__ = ["INF", "MIPModel", "MIPResult"]

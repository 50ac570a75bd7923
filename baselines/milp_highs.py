"""A thin matrix-form front end to HiGHS (``highspy``) for the BPRR models of :mod:`.milp`.

Models are built column by column (:meth:`MIPModel.add_vars`) and row by row in vectorised batches
(:meth:`MIPModel.add_rows`), handed to HiGHS in one ``passModel`` call as a column-wise sparse
matrix, optionally seeded with a starting solution (``setSolution``), and solved under a wall-clock
time limit and a relative gap target.  :class:`MIPResult` carries what every solver-backed baseline
must report (docs/milp.md): solution, objective, dual bound, gap, status and wall
time.  HiGHS is open source (MIT); no commercial solver is used anywhere.

Quiet and deterministic: HiGHS never writes to stdout.  Its one-time start-up banner (printed by the
C++ library on the first ``Highs()`` of a process, before any option can be set) is sent to
``/dev/null`` by :func:`new_highs`; every run sets ``output_flag`` off (or, with ``log``, routes the
log to a file or to the :mod:`logging` logger ``distllm_env.highs``, never to the console).  Every run
uses one thread and a fixed ``random_seed``, so the same model gives the same result on any machine
load — unless the time limit stops the search, in which case the result depends on the machine's
speed (the status is then ``time_limit``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

try:  # highspy is a core dependency; the import error is reported when a model is solved
    import highspy
except ImportError:  # pragma: no cover - exercised only in broken installations
    highspy = None

INF = float("inf")

#: HiGHS's presolve cannot be interrupted: measured 0.56 µs per non-zero (5.3 s for the 9.4 M non-zeros
#: of the RLT model of ``paper-gtsce`` with 40 requests, 2-core machine under load; switching presolve
#: off is worse: that run then ignored a 5 s limit for 73 s).  When less than this many seconds per
#: non-zero remain before the deadline, HiGHS is not run at all (status ``time_limit``).
PRESOLVE_S_PER_NONZERO = 1e-6

#: The logger that receives HiGHS's log when a solve is called with ``log=True``.
HIGHS_LOGGER = logging.getLogger("distllm_env.highs")

_banner_silenced = False


def new_highs():
    """A ``highspy.Highs`` object with its console output off.  The first construction in a process
    prints HiGHS's banner from C++ straight to file descriptor 1 (``output_flag`` cannot be set
    before it), so that construction runs with descriptor 1 pointed at ``/dev/null``.
    Raises ImportError if highspy is missing."""
    global _banner_silenced
    if highspy is None:  # pragma: no cover
        raise ImportError("highspy is required for the MILP baselines (pip install highspy)")
    if _banner_silenced:
        h = highspy.Highs()
    else:
        try:
            sys.stdout.flush()
        except (AttributeError, ValueError, OSError):  # pragma: no cover - closed or missing stdout
            pass
        saved = devnull = None
        try:
            saved = os.dup(1)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
        except OSError:  # pragma: no cover - no descriptor 1 to redirect
            saved = None
        try:
            h = highspy.Highs()
        finally:
            if saved is not None:
                os.dup2(saved, 1)
                os.close(saved)
            if devnull is not None:
                os.close(devnull)
        _banner_silenced = True
    h.setOptionValue("output_flag", False)
    h.setOptionValue("log_to_console", False)
    return h


def _configure_log(h, log) -> None:
    """``log``: False/None = no log; True = to the logger ``distllm_env.highs`` (INFO); a path = that
    file.  Never to the console."""
    if not log:
        return
    h.setOptionValue("output_flag", True)
    h.setOptionValue("log_to_console", False)
    if log is True:
        h.cbLogging.subscribe(lambda event: HIGHS_LOGGER.info("%s", str(event.message).rstrip()))
    else:
        h.setOptionValue("log_file", os.fspath(log))


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
    ran: bool = True             # False: HiGHS was not run (no time left for its presolve)


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
        self._cache = None

    def add_vars(self, n: int, lb=0.0, ub=INF, cost=0.0, integer: bool = False) -> np.ndarray:
        """Add ``n`` variables; returns their column indices."""
        n = int(n)
        self._cache = None
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
        one-sided rows).  Duplicate (row, col) entries are summed.  Returns the new rows' indices.

        Raises:
            ValueError: a row or column index outside the batch / the model's variables."""
        self._cache = None
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
        """Replace the whole objective vector (one entry per variable added so far).

        Raises:
            ValueError: ``cost`` does not have one entry per variable."""
        cost = np.asarray(cost, dtype=float)
        if cost.shape != (self.num_vars,):
            raise ValueError(f"cost must have {self.num_vars} entries, got {cost.shape}")
        self._cache = None
        self._cost = [cost.copy()]
        self._lb = [np.concatenate(self._lb)] if self._lb else []
        self._ub = [np.concatenate(self._ub)] if self._ub else []
        self._int = [np.concatenate(self._int)] if self._int else []

    # -- solving -------------------------------------------------------------------------------------
    def _arrays(self):
        """(lb, ub, cost, integer, A (CSC), row_lo, row_hi), assembled once until the model changes."""
        if self._cache is None:
            self._cache = self._assemble()
        return self._cache

    def _assemble(self):
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
              start: np.ndarray | None = None, random_seed: int = 0, log=False,
              relax: bool = False, deadline: float | None = None) -> MIPResult:
        """Solve with HiGHS (one thread, ``random_seed``; see the module docstring).  ``start`` (a full
        vector of values) is offered as the first incumbent; ``relax`` drops integrality (the LP
        relaxation, whose optimum is the root bound before cuts).  ``time_limit_s`` bounds HiGHS's run;
        ``deadline`` (a ``time.perf_counter()`` instant) bounds it too, measured just before the run
        starts (after the matrix is assembled and passed): HiGHS is not run if it has passed, nor if
        less than :data:`PRESOLVE_S_PER_NONZERO` s per non-zero remain (``ran=False`` in the result:
        HiGHS's presolve cannot be interrupted), and is interrupted by callbacks at the deadline.
        ``log``: see :func:`_configure_log`.
        Raises ImportError if highspy is missing."""
        lb, ub, cost, integer, A, row_lo, row_hi = self._arrays()
        if relax:
            integer = np.zeros(len(integer), dtype=bool)
            start = None
        h = new_highs()
        _configure_log(h, log)
        h.setOptionValue("threads", 1)
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
        limit = None if time_limit_s is None else float(time_limit_s)
        if deadline is not None:
            left = deadline - time.perf_counter()
            if left <= PRESOLVE_S_PER_NONZERO * A.nnz:   # no time left for presolve: do not run
                return MIPResult(status="time_limit", has_solution=False, x=None, objective=INF, bound=-INF, gap=INF,
                                 solve_time_s=time.perf_counter() - t0, node_count=0, num_vars=self.num_vars,
                                 num_rows=self.num_rows, start_accepted=accepted, ran=False)
            limit = left if limit is None else min(limit, left)
            # HiGHS checks its time limit only now and then; the interrupt callbacks (simplex, IPM,
            # MIP) stop it at the deadline too
            stop_at = time.perf_counter() + limit

            def _interrupt(event):
                if time.perf_counter() >= stop_at:
                    event.interrupt()

            h.cbSimplexInterrupt += _interrupt
            h.cbIpmInterrupt += _interrupt
            h.cbMipInterrupt += _interrupt
        if limit is not None:
            h.setOptionValue("time_limit", float(max(limit, 0.01)))
        if h.run() == highspy.HighsStatus.kError and h.getModelStatus() == highspy.HighsModelStatus.kNotset:
            # HiGHS's thread pool is global: when other code in this process already started it with
            # more threads, a run with threads=1 is refused; restart the pool with one thread
            h.resetGlobalScheduler(True)
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
            highspy.HighsModelStatus.kInterrupt: "time_limit" if deadline is not None else "interrupted",
            highspy.HighsModelStatus.kMemoryLimit: "memory_limit",
        }.get(model_status, status.lower().replace(" ", "_"))
        obj = float(info.objective_function_value) if has_solution else INF
        bound = float(info.mip_dual_bound) if integer.any() else obj
        gap = float(info.mip_gap) if integer.any() and has_solution else (0.0 if has_solution else INF)
        return MIPResult(status=name, has_solution=has_solution, x=x, objective=obj, bound=bound, gap=gap,
                         solve_time_s=elapsed, node_count=int(info.mip_node_count) if integer.any() else 0,
                         num_vars=self.num_vars, num_rows=self.num_rows, start_accepted=accepted)


__all__ = ["HIGHS_LOGGER", "INF", "MIPModel", "MIPResult", "PRESOLVE_S_PER_NONZERO", "new_highs"]

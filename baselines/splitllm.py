"""SplitLLM split policies (arXiv 2410.10759; docs/model.md §10.2, §10.3, §10.4).

Each policy decides, for one request, which layers the client runs (x_l = 1) and which the server
runs, minimising the server work W(x) = Σ (1 − x_l)·w_l subject to the end-to-end latency T(x) ≤ SLA
(:mod:`distllm_env.split.profile` defines T, W and the rounded time units).

* ``dp`` — :func:`~distllm_env.baselines.splitllm_dp.solve_dp` (its own module, re-exported here): the exact dynamic programme over (layer, time budget, location) of
  docs/model.md §10.3 with conservative rounding (every transition's time rounded up to whole steps of
  δ = SLA/1000 unless set), vectorised over the budget axis with numpy, with back-tracking.  Exact
  relative to the δ-rounded times; never violates the SLA.  Among the placements of least work it
  returns one of least rounded time.
* ``prefix-greedy`` — docs/model.md §10.4 (1) [R]: put layers 1, 2, … on the client while the placement
  "client prefix + server rest" meets the SLA; stop at the first layer that would break it.
* ``ratio-greedy`` — docs/model.md §10.4 (2) [R]: starting from all-server, repeatedly move to the client the
  server layer with the largest server-work saving per unit of added latency (moves that cut latency
  first) while the SLA holds.
* ``server-only`` — no offloading.
* ``exhaustive`` — all 2^L placements (tests only; L ≤ 22), judged on the same δ-rounded times as
  the DP by default.

When no placement meets the SLA a policy returns the server-only placement with
``fallback="server-only"`` and a ``reason`` (``feasible`` then says whether even that meets the SLA).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distllm_env.errors import PolicyLoadError, ScenarioError
from distllm_env.policy_options import check_bool, check_int, check_number
from distllm_env.split.profile import (CLIENT, SERVER, LayerProfile, SplitPlan, check_sla, make_plan,
                                       server_only_plan)

from .splitllm_dp import DEFAULT_BUDGET_STEPS, SplitTables, budget, dp_tables, solve_dp

class _Judge:
    """Latency (continuous, s) or rounded units of placements, with the matching limit."""

    def __init__(self, profile: LayerProfile, sla_s: float, rounded: bool, delta_s, budget_steps):
        self.profile = profile
        self.rounded = rounded
        if rounded:
            self.delta_s, self.J = budget(sla_s, delta_s, budget_steps)
            self.limit = self.J
        else:
            self.delta_s, self.J = None, None
            self.limit = sla_s

    def __call__(self, X) -> np.ndarray:
        if self.rounded:
            return self.profile.units(X, self.delta_s, self.J).astype(float)
        return self.profile.latencies_s(X)

    def fits(self, t) -> np.ndarray:
        if self.rounded:
            return np.asarray(t) <= self.limit
        return np.asarray(t) <= self.limit * (1 + 1e-9)

    def plan(self, x, sla_s, policy) -> SplitPlan:
        units = None
        if self.rounded:
            units = int(self.profile.units(np.asarray(x)[None, :], self.delta_s, self.J)[0])
        return make_plan(self.profile, x, sla_s, policy, delta_s=self.delta_s, rounded_units=units)


class _SplitPolicyBase:
    name = "split"

    def __init__(self, budget_steps: int = DEFAULT_BUDGET_STEPS, delta_s: float | None = None,
                 rounded: bool = False):
        # bad options raise ScenarioError at policy_defaults.options.<name>.<option> (docs/contracts.md §3)
        self.budget_steps = check_int(self.name, "budget_steps", budget_steps, 1)
        self.delta_s = None if delta_s is None else check_number(self.name, "delta_s", delta_s, minimum=0.0,
                                                                 exclusive=True)
        self.rounded = check_bool(self.name, "rounded", rounded)

    def _judge(self, profile, sla_s) -> _Judge:
        return _Judge(profile, sla_s, self.rounded, self.delta_s, self.budget_steps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(budget_steps={self.budget_steps}, delta_s={self.delta_s}, rounded={self.rounded})"


class DPSplit(_SplitPolicyBase):
    """SplitLLM's exact DP (:func:`solve_dp`)."""

    name = "dp"

    def split(self, request: Any, profile: LayerProfile, sla_s: float) -> SplitPlan:
        return solve_dp(profile, sla_s, self.delta_s, self.budget_steps, policy=self.name)


class ServerOnlySplit(_SplitPolicyBase):
    """Every layer on the server (no offloading)."""

    name = "server-only"

    def split(self, request: Any, profile: LayerProfile, sla_s: float) -> SplitPlan:
        sla = check_sla(sla_s)
        plan = server_only_plan(profile, sla, self.name)
        if not plan.feasible:
            return server_only_plan(profile, sla, self.name, reason=(
                f"server-only latency {plan.latency_s:.6g} s exceeds the SLA of {sla:.6g} s"))
        return plan


class PrefixGreedySplit(_SplitPolicyBase):
    """Client prefix while the SLA holds, then the server (one split point; docs/model.md §10.4 (1))."""

    name = "prefix-greedy"

    def split(self, request: Any, profile: LayerProfile, sla_s: float) -> SplitPlan:
        sla = check_sla(sla_s)
        judge = self._judge(profile, sla)
        L = profile.num_layers
        X = np.tril(np.ones((L + 1, L), dtype=np.int8), k=-1)   # row k: the first k layers on the client
        ok = judge.fits(judge(X))
        if not ok[0]:
            return _fallback(profile, sla, self.name, judge)
        bad = np.flatnonzero(~ok[1:])
        k = int(bad[0]) if bad.size else L
        return judge.plan(X[k], sla, self.name)


class RatioGreedySplit(_SplitPolicyBase):
    """Move the server layer with the best work saving per added latency to the client while the SLA
    holds (docs/model.md §10.4 (2)); moves that do not add latency come first, ties go to the larger saving,
    then the lower layer index; a move that saves no work and adds latency is never made."""

    name = "ratio-greedy"

    def split(self, request: Any, profile: LayerProfile, sla_s: float) -> SplitPlan:
        sla = check_sla(sla_s)
        judge = self._judge(profile, sla)
        L = profile.num_layers
        x = np.zeros(L, dtype=np.int8)
        cur = float(judge(x[None, :])[0])
        if not judge.fits(cur):
            return _fallback(profile, sla, self.name, judge)
        work = profile.server_work_flops
        while True:
            cand = np.flatnonzero(x == SERVER)
            if cand.size == 0:
                break
            X = np.repeat(x[None, :], cand.size, axis=0)
            X[np.arange(cand.size), cand] = CLIENT
            t = judge(X)
            dt = t - cur
            w = work[cand]
            ok = judge.fits(t) & ((w > 0) | (dt <= 0))
            if not ok.any():
                break
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(dt > 0, w / np.where(dt > 0, dt, 1.0), np.inf)
            ratio = np.where(ok, ratio, -np.inf)
            # lexicographic: ratio, then saving, then lowest index (lexsort: last key is primary)
            order = np.lexsort((cand, -w, -ratio))
            i = int(order[0])
            x = X[i]
            cur = float(t[i])
        return judge.plan(x, sla, self.name)


class ExhaustiveSplit(_SplitPolicyBase):
    """Brute force over all 2^L placements (tests only, L ≤ 22).  Judged on the δ-rounded times by
    default (``rounded=True``), so it is the ground truth for :func:`solve_dp`."""

    name = "exhaustive"
    MAX_LAYERS = 22

    def __init__(self, budget_steps: int = DEFAULT_BUDGET_STEPS, delta_s: float | None = None,
                 rounded: bool = True):
        super().__init__(budget_steps, delta_s, rounded)

    def split(self, request: Any, profile: LayerProfile, sla_s: float) -> SplitPlan:
        """The optimal plan by enumerating every split (for tests; at most :attr:`MAX_LAYERS` layers).

        Raises:
            ScenarioError: the profile has more than :attr:`MAX_LAYERS` layers."""
        sla = check_sla(sla_s)
        L = profile.num_layers
        if L > self.MAX_LAYERS:
            raise ScenarioError("profile", f"exhaustive search is limited to {self.MAX_LAYERS} layers, got {L}")
        judge = self._judge(profile, sla)
        best = None   # (work, time, index)
        chunk = 1 << 16
        bits = np.arange(L, dtype=np.int64)
        for start in range(0, 1 << L, chunk):
            idx = np.arange(start, min(start + chunk, 1 << L), dtype=np.int64)
            X = ((idx[:, None] >> bits) & 1).astype(np.int8)
            t = judge(X)
            ok = judge.fits(t)
            if not ok.any():
                continue
            w = profile.server_work(X)
            w = np.where(ok, w, np.inf)
            i = int(np.lexsort((t, w))[0])
            cand = (float(w[i]), float(t[i]), X[i].copy())
            if best is None or (cand[0], cand[1]) < (best[0], best[1]):
                best = cand
        if best is None:
            return _fallback(profile, sla, self.name, judge)
        return judge.plan(best[2], sla, self.name)


def _fallback(profile: LayerProfile, sla_s: float, policy: str, judge: _Judge) -> SplitPlan:
    so = np.zeros(profile.num_layers, np.int8)
    t = float(judge(so[None, :])[0])
    what = f"{int(t)} rounded steps > J = {judge.J}" if judge.rounded else f"latency {t:.6g} s > SLA {sla_s:.6g} s"
    return server_only_plan(profile, sla_s, policy, reason=f"even server-only misses the SLA ({what})")


#: split policy names → classes
SPLIT_POLICIES: dict[str, type] = {
    "dp": DPSplit,
    "prefix-greedy": PrefixGreedySplit,
    "ratio-greedy": RatioGreedySplit,
    "server-only": ServerOnlySplit,
    "exhaustive": ExhaustiveSplit,
}


def make_split_policy(spec: Any, **options):
    """A split policy from a registered name (:data:`SPLIT_POLICIES`), a ``module:Class`` path given
    by the caller (imported), or a policy object (returned as is).  ``options`` go to the constructor
    (e.g. ``budget_steps``).  Raises :class:`PolicyLoadError` (unknown name, failed import, no
    ``split`` method) or :class:`ScenarioError` at ``policy_defaults.options.<name>.<option>`` (bad
    or unknown option)."""
    from distllm_env.imports import is_import_path, load_object
    from distllm_env.registry import instantiate

    if not isinstance(spec, str):
        if not callable(getattr(spec, "split", None)):
            raise PolicyLoadError(f"{spec!r} has no split(request, profile, sla_s) method")
        return spec
    if spec in SPLIT_POLICIES:
        cls = SPLIT_POLICIES[spec]
    elif is_import_path(spec):
        cls = load_object(spec, field="split policy")
    else:
        raise PolicyLoadError(f"unknown split policy {spec!r}; expected one of {sorted(SPLIT_POLICIES)} or "
                              "module:Class")
    obj = instantiate(cls, spec, options)
    if not callable(getattr(obj, "split", None)):
        raise PolicyLoadError(f"split policy {spec!r} has no split(request, profile, sla_s) method")
    return obj


__all__ = [
    "DPSplit", "ExhaustiveSplit", "PrefixGreedySplit", "RatioGreedySplit", "SPLIT_POLICIES", "ServerOnlySplit",
    "SplitTables", "budget", "dp_tables", "make_split_policy", "solve_dp",
]

"""SplitLLM split policies (arXiv 2410.10759; docs/model.md §10.2, §10.3, §10.4).

Each policy decides, for one request, which layers the client runs (x_l = 1) and which the server
runs, minimising the server work W(x) = Σ (1 − x_l)·w_l subject to the end-to-end latency T(x) ≤ SLA
(:mod:`distllm_env.split.profile` defines T, W and the rounded time units).

* ``dp`` — :func:`solve_dp`: the exact dynamic programme over (layer, time budget, location) of
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

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from distllm_env.errors import PolicyLoadError, ScenarioError
from distllm_env.policy_options import check_bool, check_int, check_number
from distllm_env.split.profile import (CLIENT, SERVER, LayerProfile, SplitPlan, check_sla, make_plan,
                                       server_only_plan)

DEFAULT_BUDGET_STEPS = 1000


def budget(sla_s: float, delta_s: float | None = None, budget_steps: int = DEFAULT_BUDGET_STEPS) -> tuple[float, int]:
    """``(δ, J)``: δ = SLA / budget_steps unless given, J = ⌊SLA / δ⌋ (docs/model.md §10.3)."""
    sla = check_sla(sla_s)
    if delta_s is None:
        if isinstance(budget_steps, bool) or int(budget_steps) != budget_steps or budget_steps < 1:
            raise ScenarioError("budget_steps", f"expected an integer ≥ 1, got {budget_steps!r}")
        delta = sla / int(budget_steps)
    else:
        delta = float(delta_s)
        if not (delta > 0 and math.isfinite(delta)):
            raise ScenarioError("delta_s", f"expected a finite time step > 0, got {delta_s!r}")
    J = int(math.floor(sla / delta * (1 + 1e-12)))
    if J > 10**7:
        raise ScenarioError("delta_s", f"SLA / δ = {J} steps is too many (at most 10^7)")
    return delta, J


@dataclass(frozen=True, eq=False)
class SplitTables:
    """The DP tables of one request (docs/model.md §10.3), locations 0 = server, 1 = client.

    * ``F[k, b, j]`` — least server work to run layers 0 … k−1 with layer k−1 at location b using at
      most j units of δ (k = 0 is the input, at the client: F[0, client, :] = 0, F[0, server, :] = inf);
    * ``from_client[k, b, j]`` — back-pointer: the optimum of ``F[k, b, j]`` has layer k−2 on the client;
    * ``step_units[l, p, b]`` — units of the transition into layer l at b from p (time + boundary
      transfer, rounded up); ``final_units[b]`` — units to return the output from b;
    * ``min_units_to_go[k, p]`` — the least rounded time still needed to run layers k … L−1 and
      deliver the output when layer k−1 ran at p (k = 0: p = client, the input).  An RL agent that has
      used ``u`` units and placed layer k−1 at p keeps the SLA reachable with action b for layer k
      iff ``u + step_units[k, p, b] + min_units_to_go[k+1, b] ≤ J`` — :meth:`action_mask`.
    """

    profile: LayerProfile
    sla_s: float
    delta_s: float
    budget_units: int
    step_units: np.ndarray
    final_units: np.ndarray
    F: np.ndarray
    from_client: np.ndarray
    min_units_to_go: np.ndarray

    @property
    def num_layers(self) -> int:
        return self.profile.num_layers

    @property
    def feasible(self) -> bool:
        """Whether some placement fits the rounded budget."""
        return bool(self.min_units_to_go[0, CLIENT] <= self.budget_units)

    def action_mask(self, layer: int, prev_location: int, used_units: int) -> np.ndarray:
        """``mask[b]`` (b = 0 server, 1 client): True iff placing ``layer`` at b after the previous layer at
        ``prev_location`` (client for layer 0), with ``used_units`` units of δ spent, can still finish
        within the budget J."""
        L, J = self.num_layers, self.budget_units
        if not 0 <= layer < L:
            raise ScenarioError("layer", f"expected a layer in [0, {L - 1}], got {layer}")
        if prev_location not in (SERVER, CLIENT):
            raise ScenarioError("prev_location", f"expected 0 (server) or 1 (client), got {prev_location!r}")
        need = self.step_units[layer, prev_location] + self.min_units_to_go[layer + 1]
        return (int(used_units) + need) <= J

    def best(self) -> tuple[float, int, int]:
        """``(work, location of the last layer, units used by the layers)`` of an optimal placement:
        least work, then least rounded time.  Work is inf if nothing fits."""
        J, L = self.budget_units, self.num_layers
        vals = []
        for b in (SERVER, CLIENT):
            jb = J - int(self.final_units[b])
            vals.append(self.F[L, b, jb] if jb >= 0 else np.inf)
        best = min(vals)
        if not np.isfinite(best):
            return math.inf, CLIENT, J
        tol = best + 1e-12 * max(1.0, abs(best))
        choice = None
        for b in (SERVER, CLIENT):
            jb = J - int(self.final_units[b])
            if jb < 0 or vals[b] > tol:
                continue
            j = int(np.argmax(self.F[L, b, : jb + 1] <= tol))   # smallest budget reaching the optimum
            total = j + int(self.final_units[b])
            if choice is None or total < choice[0]:
                choice = (total, b, j)
        _, b, j = choice
        return float(best), b, j

    def backtrack(self, location: int, units: int) -> np.ndarray:
        """The placement behind ``F[L, location, units]`` (1 = client)."""
        L = self.num_layers
        x = np.zeros(L, dtype=np.int8)
        b, j = int(location), int(units)
        for k in range(L, 0, -1):
            x[k - 1] = b
            p = CLIENT if self.from_client[k, b, j] else SERVER
            j -= int(self.step_units[k - 1, p, b])
            b = p
        if b != CLIENT or j < 0:  # pragma: no cover - guards the invariant
            raise RuntimeError("DP back-tracking did not reach the input at the client")
        return x


def dp_tables(profile: LayerProfile, sla_s: float, delta_s: float | None = None,
              budget_steps: int = DEFAULT_BUDGET_STEPS) -> SplitTables:
    """Fill the SplitLLM DP tables (docs/model.md §10.3) for one request, vectorised over the budget axis.

    F[k+1, b, j] = work(k, b) + min_{p} F[k, p, j − step_units[k, p, b]]   (F[·, ·, j<0] = inf).
    Time O(L·J), memory O(L·J)."""
    if not isinstance(profile, LayerProfile):
        raise ScenarioError("profile", f"expected a LayerProfile, got {type(profile).__name__}")
    sla = check_sla(sla_s)
    delta, J = budget(sla, delta_s, budget_steps)
    L = profile.num_layers
    step, final = profile.step_units(delta, J)
    work = profile.server_work_flops
    F = np.full((L + 1, 2, J + 1), np.inf)
    F[0, CLIENT, :] = 0.0
    from_client = np.zeros((L + 1, 2, J + 1), dtype=bool)
    for k in range(L):
        prev_s, prev_c = F[k, SERVER], F[k, CLIENT]
        for b in (SERVER, CLIENT):
            out = F[k + 1, b]
            s0, s1 = int(step[k, SERVER, b]), int(step[k, CLIENT, b])
            if s0 <= J:
                out[s0:] = prev_s[: J + 1 - s0]
            if s1 <= J:
                seg = prev_c[: J + 1 - s1]
                tgt = out[s1:]
                np.less(seg, tgt, out=from_client[k + 1, b, s1:])
                np.minimum(tgt, seg, out=tgt)
            if b == SERVER and work[k] != 0.0:
                out += work[k]
    to_go = np.empty((L + 1, 2), dtype=np.int64)
    to_go[L] = final
    for k in range(L - 1, -1, -1):
        to_go[k] = np.min(step[k] + to_go[k + 1][None, :], axis=1)
    return SplitTables(profile=profile, sla_s=sla, delta_s=delta, budget_units=J, step_units=step,
                       final_units=final, F=F, from_client=from_client, min_units_to_go=to_go)


def solve_dp(profile: LayerProfile, sla_s: float, delta_s: float | None = None,
             budget_steps: int = DEFAULT_BUDGET_STEPS, policy: str = "dp") -> SplitPlan:
    """Optimal split of one request on the δ-rounded times (docs/model.md §10.3): least server work with
    latency ≤ SLA, back-tracked from the DP tables.  If nothing fits, the server-only placement with
    ``fallback="server-only"``."""
    tables = dp_tables(profile, sla_s, delta_s, budget_steps)
    value, b, j = tables.best()
    if not np.isfinite(value):
        so_latency = profile.latency_s(np.zeros(profile.num_layers, np.int8))
        return server_only_plan(profile, tables.sla_s, policy, reason=(
            f"no placement fits the SLA of {tables.sla_s:.6g} s in {tables.budget_units} steps of "
            f"δ = {tables.delta_s:.6g} s (server-only latency {so_latency:.6g} s)"))
    x = tables.backtrack(b, j)
    units = int(profile.units(x[None, :], tables.delta_s, tables.budget_units)[0])
    return make_plan(profile, x, tables.sla_s, policy, delta_s=tables.delta_s, rounded_units=units)


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

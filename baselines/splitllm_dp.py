"""SplitLLM's exact dynamic programme (arXiv 2410.10759; docs/model.md §10.3): the DP tables over
(layer, time budget, location) with conservative δ-rounding, vectorised over the budget axis, and
back-tracking.  Used by the ``dp`` split policy (:mod:`distllm_env.baselines.splitllm`, which
re-exports every name here) and by the ClientSplit env's action mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from distllm_env.errors import ScenarioError
from distllm_env.split.profile import (CLIENT, SERVER, LayerProfile, SplitPlan, check_sla, make_plan,
                                       server_only_plan)

DEFAULT_BUDGET_STEPS = 1000


def budget(sla_s: float, delta_s: float | None = None, budget_steps: int = DEFAULT_BUDGET_STEPS) -> tuple[float, int]:
    """``(δ, J)``: δ = SLA / budget_steps unless given, J = ⌊SLA / δ⌋ (docs/model.md §10.3).

    Raises:
        ScenarioError: ``delta_s`` not a finite number > 0, SLA / δ over 10^7 steps, or
            ``budget_steps`` not an integer ≥ 1."""
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
        within the budget J.

        Raises:
            ScenarioError: ``layer`` out of range or ``prev_location`` not 0 / 1."""
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
        """The placement behind ``F[L, location, units]`` (1 = client).

        Raises:
            RuntimeError: only if the DP tables are inconsistent (a bug)."""
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
    Time O(L·J), memory O(L·J).

    Raises:
        ScenarioError: ``profile`` is not a :class:`LayerProfile`, or a bad SLA / budget (:func:`budget`)."""
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


__all__ = ["DEFAULT_BUDGET_STEPS", "SplitTables", "budget", "dp_tables", "solve_dp"]

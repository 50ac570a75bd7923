"""Load features and per-episode arrival rates of ``distllm/BlockPlacement-*`` (docs/envs.md, BlockPlacement).

* :func:`draw_arrival_rate`: the episode's λ from ``config["arrival_rate_per_s"]`` (None, a number, or a
  range ``[lo, hi]`` drawn log-uniformly or uniformly from child 3 of the scenario seed's ``policy``
  stream, a stream no policy uses), so an episode stays a pure function of (scenario, config, seed,
  actions).
* :func:`episode_load`: λ, the workload's mean prompt / declared output tokens, CG-BP's lone-request
  time T₁, the offered sessions λ·T₁ (Little's law) and the |R| of CG-BP's default rule
  (:func:`distllm_env.baselines.cg_bp.sessions_rule`, docs/contracts.md §4).
* :func:`block_utilisation`: the *planned* utilisation of each block by the servers decided so far:
  λ·T₁ / Σ_{decided j hosting b} κ_j with κ_j = ⌊(M_j − s_m·m_j) / (s_c·m_j)⌋ the sessions that fit through
  all of j's blocks at the scenario's maximum lengths (CG-BP's κ, arXiv 2512.21884 Algorithm 1 step 1).
* the ``action: "sessions"`` grid (:data:`DEFAULT_SESSIONS_GRID`) and the config validators.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import PlacementError, ScenarioError
from ..rng import generators, seed_streams
from .spaces import Feature

#: default ``config["sessions_grid"]``: |R| candidates on a ×1.5 / ×1.33 geometric ladder from 1 to 1024,
#: covering the default rule's |R| up to λ = 8 /s on the paper-* presets (≈ 480–970 at λ = 8, with the
#: 60 s allocation delay in T₁)
DEFAULT_SESSIONS_GRID: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512,
                                          768, 1024)
#: bounds of the load features (docs/envs.md, BlockPlacement "Load features")
_MAX_RATE_PER_S, _MAX_TOKENS, _MAX_SESSIONS, _MAX_T1_S = 1.0e3, 1.0e6, 1.0e6, 1.0e4
#: upper bound of the ``block_utilisation`` feature (also its value on a block no decided server hosts)
UTILISATION_MAX = 10.0
#: ``workload.arrival`` kinds whose arrivals follow ``workload.arrival_rate_per_s`` (config ``arrival_rate_per_s``)
RATE_ARRIVALS = ("poisson", "gamma")
#: index of the env's arrival-rate stream among the children of the scenario seed's ``policy`` stream
#: (0: placement, 1: routing, 2: the env's own draws, e.g. a random server order)
ARRIVAL_RATE_STREAM = 3


def arrival_rate_option(key: str, value: Any) -> float | list[float] | None:
    """``config["arrival_rate_per_s"]``: None, a finite number > 0, or ``[lo, hi]`` with 0 < lo ≤ hi
    (returned as a list, so the config survives a JSON round trip unchanged)."""
    def num(x: Any) -> float | None:
        if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
            return None
        x = float(x)
        return x if math.isfinite(x) and x > 0 else None

    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) == 2:
            lo, hi = num(value[0]), num(value[1])
            if lo is not None and hi is not None and lo <= hi:
                return [lo, hi]
    else:
        x = num(value)
        if x is not None:
            return x
    raise ScenarioError(f"config.{key}", f"expected None (the scenario's workload.arrival_rate_per_s), a number > 0 "
                                         f"or a range [lo, hi] with 0 < lo ≤ hi (requests per second), got {value!r}")


def sessions_grid_option(key: str, value: Any) -> list[int]:
    """``config["sessions_grid"]``: 1–64 strictly increasing integers ≥ 1 (returned as a list)."""
    ok = isinstance(value, (list, tuple)) and 1 <= len(value) <= 64 and all(
        isinstance(x, (int, np.integer)) and not isinstance(x, bool) and int(x) >= 1 for x in value)
    if ok:
        grid = [int(x) for x in value]
        if all(a < b for a, b in zip(grid, grid[1:])):
            return grid
    raise ScenarioError(f"config.{key}", f"expected 1 to 64 strictly increasing integers ≥ 1 (candidate |R| values), "
                                         f"got {value!r}")


def draw_arrival_rate(spec: "float | Sequence[float] | None", draw: str, seed: int) -> float | None:
    """The episode's λ (requests per second) for scenario seed ``seed``: None (keep the scenario's),
    ``spec`` itself, or a draw in [lo, hi] — ``log-uniform``: exp(U(ln lo, ln hi)); ``uniform``:
    U(lo, hi) — from child :data:`ARRIVAL_RATE_STREAM` of the seed's ``policy`` stream."""
    if spec is None or not isinstance(spec, (list, tuple)):
        return spec
    lo, hi = spec
    if lo == hi:
        return lo
    rng = generators(seed_streams(seed)["policy"], ARRIVAL_RATE_STREAM + 1)[ARRIVAL_RATE_STREAM]
    u = float(rng.random())
    if draw == "log-uniform":
        return float(min(max(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))), lo), hi))
    return float(lo + u * (hi - lo))


@dataclass(frozen=True)
class EpisodeLoad:
    """The load an episode's placement must serve (units in the names).  ``t1_s``, ``offered_sessions``
    and ``rule_sessions`` are 0 when CG-BP is infeasible at |R| = 1 (the rule has no T₁ then)."""

    arrival_rate_per_s: float
    mean_prompt_tokens: float
    mean_output_tokens: float
    t1_s: float
    offered_sessions: float
    rule_sessions: int


def episode_load(instance, requests: Sequence) -> EpisodeLoad:
    """:class:`EpisodeLoad` of ``instance`` (built from the episode's scenario, so with its λ) and its
    ``requests``: the mean prompt length and the mean *declared* output length (the true one when the
    workload's lengths are known, docs/contracts.md §3) over the requests; T₁ and |R| from
    :func:`distllm_env.baselines.cg_bp.sessions_rule` with the scenario's defaults (exactly the |R| the
    default ``cg-bp`` uses)."""
    from ..baselines.cg_bp import sessions_rule

    lam = float(instance.scenario.workload.arrival_rate_per_s)
    n = max(len(requests), 1)
    prompt = sum(r.prompt_tokens for r in requests) / n
    output = sum(r.declared_output_tokens for r in requests) / n
    try:
        rule = sessions_rule(instance, lam)
        t1, R = float(rule.t1_s), int(rule.sessions)
    except PlacementError:
        t1, R = 0.0, 0
    return EpisodeLoad(lam, float(prompt), float(output), t1, lam * t1, R)


def block_utilisation(offered_sessions: float, starts: np.ndarray, counts: np.ndarray, decided: np.ndarray,
                      memory_bytes: np.ndarray, block_bytes: int, kv_block_bytes: int, num_blocks: int) -> np.ndarray:
    """(L,) planned utilisation: ``offered_sessions`` / C_b, C_b = Σ κ_j over the decided servers j hosting
    block b (κ_j as in the module docstring); :data:`UTILISATION_MAX` where C_b = 0, clipped to it."""
    C = np.zeros(num_blocks, dtype=np.float64)
    for j in np.flatnonzero(decided & (counts > 0)):
        m = int(counts[j])
        kappa = max(int(memory_bytes[j]) - block_bytes * m, 0) // (kv_block_bytes * m)
        C[int(starts[j]): int(starts[j]) + m] += kappa
    with np.errstate(divide="ignore", invalid="ignore"):
        util = np.where(C > 0, offered_sessions / np.maximum(C, 1), UTILISATION_MAX)
    return np.minimum(util, UTILISATION_MAX)


class LoadAndSessionsMixin:
    """The parts of :class:`~distllm_env.envs.placement.BlockPlacementEnv` for load features, per-episode
    λ and ``action: "sessions"`` (kept here so the env module stays small)."""

    def __init__(self, *args: Any, **kwargs: Any):
        """As :class:`~distllm_env.envs.base.DistLLMEnv` (``config_defaults`` included: the
        ``distllm/BlockPlacementSessions-*`` ids use it), then checks ``config["arrival_rate_per_s"]``
        against the scenario through the override path.

        Raises:
            ScenarioError: as the base class; a rate for a scenario whose arrivals do not follow one
                (path ``config.arrival_rate_per_s``) or a rate the scenario's own checks refuse
                (path ``workload.arrival_rate_per_s``)."""
        super().__init__(*args, **kwargs)
        spec = self.config["arrival_rate_per_s"]
        if spec is not None:
            arrival = self.scenario.workload.arrival
            if arrival not in RATE_ARRIVALS:
                raise ScenarioError("config.arrival_rate_per_s", f"scenario {self.scenario.name!r} has 'arrival: "
                                                                 f"{arrival}', whose arrivals do not follow a rate; "
                                                                 f"use None or a {'/'.join(RATE_ARRIVALS)} scenario")
            for lam in (spec if isinstance(spec, list) else (spec,)):     # every check of the override path, now
                self.scenario.with_overrides([f"workload.arrival_rate_per_s={lam!r}"])

    @property
    def sessions_mode(self) -> bool:
        """Whether ``config["action"] == "sessions"`` (one step choosing CG-BP's |R|)."""
        return self.config["action"] == "sessions"

    def _feasible_grid(self, seed: int) -> np.ndarray:
        """(G,) bool: the ``sessions_grid`` entries for which CG-BP is feasible on the episode's instance
        (Corollary 1 of arXiv 2512.21884).

        Raises:
            ScenarioError: (path ``config.sessions_grid``) none is."""
        from ..baselines.cg_bp import corollary1_feasible

        grid = self.config["sessions_grid"]
        ok = np.array([corollary1_feasible(self.instance, R) for R in grid], dtype=bool)
        if not ok.any():
            raise ScenarioError("config.sessions_grid", f"no |R| in {list(grid)} is feasible for CG-BP on scenario "
                                                        f"{self.scenario.name!r} (seed {seed}); add smaller values")
        return ok

    def _load_features(self, S: int) -> list[Feature]:
        return [
            Feature("arrival_rate_per_s", 1, 0, _MAX_RATE_PER_S, "1/s", "the episode's arrival rate λ "
                    "(workload.arrival_rate_per_s, drawn per episode when config arrival_rate_per_s is a range)"),
            Feature("mean_prompt_tokens", 1, 0, _MAX_TOKENS, "tokens", "mean prompt length of the episode's requests"),
            Feature("mean_output_tokens", 1, 0, _MAX_TOKENS, "tokens", "mean declared output length of the episode's "
                                                                       "requests (the true one when lengths are known)"),
            Feature("lone_request_time_s", 1, 0, _MAX_T1_S, "s", "T₁: completion time of a lone request under CG-BP "
                                                                 "for one session (the rule's T₁; 0 if CG-BP is infeasible)"),
            Feature("offered_sessions", 1, 0, _MAX_SESSIONS, "sessions", "λ·T₁: mean concurrent sessions (Little's law)"),
            Feature("rule_sessions", 1, 0, _MAX_SESSIONS, "sessions", "CG-BP's session target R by its default rule "
                                                                      "at this λ (docs/contracts.md §4)"),
        ]

    def _episode_scenario(self, seed: int):
        """The scenario of this episode: ``self.scenario`` with ``workload.arrival_rate_per_s`` set to the
        episode's λ (:func:`~distllm_env.envs.placement_load.draw_arrival_rate`) through the normal
        override path, so every workload check applies (a bad combination raises ScenarioError)."""
        lam = draw_arrival_rate(self.config["arrival_rate_per_s"], self.config["arrival_rate_draw"], seed)
        if lam is None:
            return self.scenario
        memo = self.__dict__.setdefault("_scenario_memo", OrderedDict())
        sc = memo.get(lam)
        if sc is None:
            sc = memo[lam] = self.scenario.with_overrides([f"workload.arrival_rate_per_s={lam!r}"])
            if len(memo) > 8:
                memo.popitem(last=False)
        return sc

    def _episode_data(self, seed: int):
        """Instance and requests of ``seed`` on the episode's scenario (its λ), exactly as
        :func:`distllm_env.simulate` builds them on that scenario (cached for the last few episodes)."""
        sc = self._episode_scenario(seed)
        if sc is self.scenario:
            return super()._episode_data(seed)
        from ..instance import build_instance
        from ..workload import generate_requests

        key = (seed, sc.workload.arrival_rate_per_s)
        hit = self._episode_cache.get(key)
        if hit is None:
            inst = build_instance(sc, seed)
            self._check_instance(inst)
            hit = self._episode_cache[key] = (inst, generate_requests(inst, seed))
            while len(self._episode_cache) > self._episode_cache_size:
                self._episode_cache.popitem(last=False)
        return hit

    def _apply_sessions(self, action: int) -> tuple[float, bool, dict]:
        """``action: "sessions"``: CG-BP (``cg-bp`` with ``sessions`` = grid[action]) places, then the
        episode's workload is simulated as after the last server in ``ranges`` mode."""
        from ..baselines.cg_bp import CGBPPlacement

        R = int(self.config["sessions_grid"][action])
        placement_rng, _, _ = self.policy_streams(self.scenario_seed)
        base = CGBPPlacement(sessions=R).place(self.instance, placement_rng)
        p = base.placement
        self.starts[:] = p.starts
        self.counts[:] = p.counts
        self.coverage[:] = 0
        for a, c in zip(p.starts, p.counts):
            self.coverage[a:a + c] += 1
        self.uncovered[:] = self.coverage == 0
        self._pos = len(self.order)
        reward, summary = self._finish(dict(base.diagnostics))
        info: dict[str, Any] = {"sessions": R, "summary": summary,
                                "reward_components": {"per_token_time": reward, "uncovered": 0.0}}
        return reward, True, info


__all__ = ["ARRIVAL_RATE_STREAM", "RATE_ARRIVALS", "DEFAULT_SESSIONS_GRID", "EpisodeLoad", "LoadAndSessionsMixin", "UTILISATION_MAX", "arrival_rate_option",
           "block_utilisation", "draw_arrival_rate", "episode_load", "sessions_grid_option"]

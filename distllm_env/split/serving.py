"""The shared server as a FIFO queue (SplitLLM's serving evaluation; docs/model.md §10.5 [R]).

Each request brings one job of length ``server_time_s`` (the server part of its split plan; a plan
with several server segments is served as one job).  Arrivals are Poisson: unit-rate exponential
gaps ``e_i`` (first gap 0, as in :mod:`distllm_env.workload`) scaled by 1/λ, the same draws for
every λ and every policy (common random numbers).  Waiting times follow Lindley's recursion
W_0 = 0, W_{n+1} = max(0, W_n + S_n − A_{n+1}), computed in closed form
W_n = C_n − min_{k ≤ n} C_k with C_n = Σ_{i<n} (S_i − A_{i+1}).

**Sustainable arrival rate**: the largest λ on the grid λ_k = base·factor^k (k ∈ ℤ, factor 1.1) at
which the mean wait over the stream stays below the mean SLA **and** the server is stable,
ρ = λ·E[S] < 1.  (The stability condition is our addition: over a finite stream of n requests the
mean-wait test alone is passed even at λ = ∞ whenever about n·E[S]/2 < mean SLA, i.e. it saturates
for fast servers; a rate the server cannot keep up with in the long run is not sustainable.)  With
common random numbers every wait is non-decreasing in λ, and so is ρ, so the grid is scanned from
λ_0 = base up or down until the condition flips.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ScenarioError


def fifo_waits(arrival_s, service_s) -> np.ndarray:
    """Waiting times (s) of a single FIFO server, arrivals sorted: Lindley's recursion in closed form.

    Raises:
        ScenarioError: shapes differ or are not 1-D, arrivals are unsorted, or a service time is
            negative or non-finite."""
    a = np.asarray(arrival_s, dtype=float)
    s = np.asarray(service_s, dtype=float)
    if a.shape != s.shape or a.ndim != 1:
        raise ScenarioError("service_s", f"expected one service time per arrival, got {s.shape} vs {a.shape}")
    if a.size == 0:
        return np.zeros(0)
    if np.any(np.diff(a) < 0):
        raise ScenarioError("arrival_s", "arrival times must be sorted")
    if np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ScenarioError("service_s", "service times must be finite and ≥ 0")
    c = np.zeros(a.size)
    np.cumsum(s[:-1] - np.diff(a), out=c[1:])
    return c - np.minimum.accumulate(c)


def unit_gaps(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-rate exponential inter-arrival gaps, the first one 0."""
    g = rng.exponential(1.0, size=int(n))
    if g.size:
        g[0] = 0.0
    return g


def waits_at_rate(rate_per_s: float, gaps, service_s) -> np.ndarray:
    """Waits when the unit gaps are scaled to arrival rate λ.

    Raises:
        ScenarioError: ``rate_per_s`` is not > 0, or as :func:`fifo_waits`."""
    if not (rate_per_s > 0):
        raise ScenarioError("rate_per_s", f"expected an arrival rate > 0, got {rate_per_s!r}")
    return fifo_waits(np.cumsum(np.asarray(gaps, dtype=float)) / rate_per_s, service_s)


def sustainable_rate(service_s, mean_sla_s: float, gaps, base_per_s: float = 1.0, factor: float = 1.1,
                     max_steps: int = 2000) -> float:
    """The largest λ = base·factor^k at which the mean wait stays below ``mean_sla_s`` and
    λ·mean(service) < 1 (see the module docstring).  ``inf`` if the server never works (all service times 0) or the condition still holds
    after ``max_steps`` grid steps up; 0 if it fails after ``max_steps`` steps down.

    Raises:
        ScenarioError: ``mean_sla_s`` is not > 0 or ``factor`` is not > 1."""
    s = np.asarray(service_s, dtype=float)
    if not (mean_sla_s > 0):
        raise ScenarioError("mean_sla_s", f"expected a mean SLA > 0, got {mean_sla_s!r}")
    if not (factor > 1):
        raise ScenarioError("factor", f"expected a grid factor > 1, got {factor!r}")
    if not np.any(s > 0):
        return math.inf

    mean_service = float(s.mean())

    def ok(k: int) -> bool:
        rate = base_per_s * factor ** k
        return rate * mean_service < 1.0 and float(waits_at_rate(rate, gaps, s).mean()) < mean_sla_s

    if ok(0):
        k = 0
        while k < max_steps and ok(k + 1):
            k += 1
        return math.inf if k >= max_steps else base_per_s * factor ** k
    k = -1
    while k > -max_steps and not ok(k):
        k -= 1
    return 0.0 if k <= -max_steps else base_per_s * factor ** k


__all__ = ["fifo_waits", "sustainable_rate", "unit_gaps", "waits_at_rate"]

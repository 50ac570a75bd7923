"""Stochastic arrival processes of a workload (``workload.arrival``, docs/scenarios.md).

Every process starts at t = 0 (the first request arrives at 0, as the published traces do) and
draws from the seed's ``workload`` arrival generator only, so arrivals are reproducible per seed.

* ``poisson``: exponential gaps of mean 1/λ (arXiv 2512.21884's simulator).
* ``gamma``: a renewal process with Gamma-distributed gaps of mean 1/λ and coefficient of variation
  ``cv`` (shape k = 1/cv², scale = cv²/λ; cv = 1 is Poisson, cv > 1 bursty, cv < 1 regular).
* ``mmpp``: a two-state Markov-modulated Poisson process: in state i arrivals are Poisson of rate
  λ_i, and the state lasts an exponential sojourn of mean s_i before switching to the other state
  (W. Fischer, K. Meier-Hellstern, "The Markov-modulated Poisson process (MMPP) cookbook",
  Performance Evaluation 18(2), 1993).  The initial state is drawn from the stationary law
  π_i = s_i / (s_0 + s_1), so the long-run rate is π_0 λ_0 + π_1 λ_1.
"""

from __future__ import annotations

import numpy as np

#: Upper bound on the sojourns an MMPP draw may need (the parser checks the expected count).
MAX_MMPP_SOJOURNS = 10_000_000


def poisson_arrivals(rng: np.random.Generator, rate_per_s: float, n: int) -> np.ndarray:
    """``n`` Poisson arrival times (s), shape (n,), the first at 0."""
    gaps = rng.exponential(1.0 / rate_per_s, size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def gamma_arrivals(rng: np.random.Generator, rate_per_s: float, cv: float, n: int) -> np.ndarray:
    """``n`` arrival times (s) of a Gamma renewal process, shape (n,), the first at 0: gaps of mean
    1/``rate_per_s`` and coefficient of variation ``cv`` (> 0)."""
    shape = 1.0 / (cv * cv)
    gaps = rng.gamma(shape, 1.0 / (rate_per_s * shape), size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def mmpp_stationary_rate(rates_per_s, mean_sojourn_s) -> float:
    """Long-run arrival rate (req/s) of a two-state MMPP: Σ_i π_i λ_i with π_i = s_i / Σ s."""
    s = np.asarray(mean_sojourn_s, dtype=float)
    return float(np.dot(s / s.sum(), np.asarray(rates_per_s, dtype=float)))


def mmpp_expected_sojourns(rates_per_s, mean_sojourn_s, n: int) -> float:
    """Expected number of sojourns needed for ``n`` arrivals (n / expected arrivals per sojourn)."""
    per_cycle = float(np.dot(rates_per_s, mean_sojourn_s))
    return 2.0 * n / per_cycle if per_cycle > 0 else float("inf")


def mmpp_arrivals(rng: np.random.Generator, rates_per_s, mean_sojourn_s, n: int, chunk: int = 4096) -> np.ndarray:
    """``n`` arrival times (s) of a two-state MMPP, shape (n,), shifted so the first is at 0.

    Sojourns are drawn ``chunk`` cycles at a time: durations D ~ Exp(s_i), a Poisson(λ_i D) count
    of arrivals in each, placed uniformly (given the count, Poisson arrivals are uniform order
    statistics).

    Raises:
        ValueError: more than ``MAX_MMPP_SOJOURNS`` sojourns would be needed (rates too small
            for their sojourns; the scenario parser rejects such parameters first)."""
    lam = np.asarray(rates_per_s, dtype=float)
    soj = np.asarray(mean_sojourn_s, dtype=float)
    state = int(rng.random() >= soj[0] / soj.sum())        # stationary initial state
    t0, used, found = 0.0, 0, 0
    parts: list[np.ndarray] = []
    while found < n:
        if used > MAX_MMPP_SOJOURNS:
            raise ValueError("mmpp: too many sojourns for the requested arrivals (rates too small)")
        states = (state + np.arange(2 * chunk)) % 2
        dur = rng.exponential(soj[states])
        start = t0 + np.concatenate(([0.0], np.cumsum(dur)[:-1]))
        counts = rng.poisson(lam[states] * dur)
        total = int(counts.sum())
        if total:
            seg = np.repeat(np.arange(states.size), counts)
            times = start[seg] + rng.random(total) * dur[seg]
            parts.append(np.sort(times))
            found += total
        t0 = float(start[-1] + dur[-1])
        used += states.size
    arrivals = np.concatenate(parts)[:n]
    return arrivals - arrivals[0]


__all__ = ["MAX_MMPP_SOJOURNS", "gamma_arrivals", "mmpp_arrivals", "mmpp_expected_sojourns", "mmpp_stationary_rate",
           "poisson_arrivals"]

"""Seeded random streams (docs/contracts.md §1).

All randomness of the simulator, environments and baselines comes from ``numpy.random.Generator``s
spawned from one ``SeedSequence(seed)`` into fixed children, in this order: ``instance`` (topology,
server and client draws), ``workload`` (arrivals, lengths, client mix) and ``policy`` (placement and
routing decisions), then ``churn`` (server up/down periods, docs/scenarios.md "Churn"; added
last so that the first three streams draw exactly as before).  Every policy therefore sees the same instance and workload for a given seed
(common random numbers), whatever it draws itself.
"""

from __future__ import annotations

import numpy as np

STREAMS = ("instance", "workload", "policy", "churn")


def check_seed(seed) -> int:
    """``seed`` as an ``int`` (numpy integers accepted).

    Raises:
        ValueError: ``seed`` is a bool, not an integer, or negative."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def seed_streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """The named child seed sequences of ``SeedSequence(seed)``."""
    children = np.random.SeedSequence(check_seed(seed)).spawn(len(STREAMS))
    return dict(zip(STREAMS, children))


def generators(ss: np.random.SeedSequence, n: int) -> list[np.random.Generator]:
    """``n`` independent generators spawned from ``ss`` (sub-streams of one named stream)."""
    return [np.random.Generator(np.random.PCG64(c)) for c in ss.spawn(n)]


def stream(seed: int, name: str) -> np.random.Generator:
    """A generator for one named stream of ``seed``."""
    return np.random.Generator(np.random.PCG64(seed_streams(seed)[name]))

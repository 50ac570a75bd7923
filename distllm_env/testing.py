"""Helpers for users' own CI: ``assert_beats(policy, baseline, scenario, seeds, margin)``.

    from distllm_env.testing import assert_beats
    assert_beats("my_pkg.routing:MyRouter", "petals", "paper-gtsce", seeds=range(10_000, 10_010), margin=0.3)

passes iff, over the paired seeds, the policy's mean ``mean_per_token_time_s`` ≤ (1 − margin) × the
baseline's; otherwise it raises ``AssertionError`` showing the per-seed table.  Policies are compare
specs (presets, ``PLACEMENT+ROUTER``, ``module:Class``) or policy objects.  All allocation delays
are 0 unless ``allocation_delays`` is given (equal delays for all policies, CONTRACTS.md §4).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .commands.common import format_table
from .compare import compare


def assert_beats(policy: Any, baseline: Any, scenario: Any, seeds: Iterable[int] = range(10_000, 10_005),
                 margin: float = 0.0, overrides: Sequence[str] = (),
                 allocation_delays: Mapping[str, float] | None = None) -> dict:
    """Assert that ``policy`` beats ``baseline`` by ``margin`` on mean per-token time over paired
    seeds; returns the comparison summary when it does."""
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    res = compare(scenario, [policy, baseline], seeds, overrides,
                  allocation_delays={} if allocation_delays is None else allocation_delays)
    p_label, b_label = res.policies[0].label, res.policies[1].label
    by = {(r["policy"], r["seed"]): r["mean_per_token_time_s"] for r in res.per_seed}
    rows = []
    for s in seeds:
        p, b = by[(p_label, s)], by[(b_label, s)]
        rows.append({"seed": s, p_label: p, b_label: b, "ratio": p / b if b else float("nan")})
    p_mean = float(np.mean([r[p_label] for r in rows]))
    b_mean = float(np.mean([r[b_label] for r in rows]))
    summary = {"policy": p_label, "baseline": b_label, "policy_mean_s": p_mean, "baseline_mean_s": b_mean,
               "threshold_s": (1 - margin) * b_mean, "margin": margin, "seeds": seeds,
               "reduction": 1 - p_mean / b_mean if b_mean else float("nan")}
    if not (np.isfinite(p_mean) and p_mean <= (1 - margin) * b_mean):
        raise AssertionError(
            f"{p_label} does not beat {b_label} by {margin:.0%} on {res.meta['scenario']}: mean per-token time "
            f"{p_mean:.4f} s vs {b_mean:.4f} s (threshold {(1 - margin) * b_mean:.4f} s, reduction "
            f"{summary['reduction']:.1%})\n" + format_table(rows + [{"seed": "mean", p_label: p_mean, b_label: b_mean,
                                                                      "ratio": p_mean / b_mean}]))
    return summary


__all__ = ["assert_beats"]

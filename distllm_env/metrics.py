"""Summary metrics of a simulation (docs/contracts.md §6).

* ``mean_per_token_time_s = Σ(completion_s − arrival_s) / Σ output_tokens`` over completed requests;
* ``ttft_s = first_token_s − arrival_s``; ``wait_s = start_s − arrival_s`` (after back-off);
* ``throughput_tokens_per_s = Σ output_tokens / (last completion − first arrival)``;
* ``goodput_requests_per_s = completed requests / (last completion − first arrival)`` (churn: a
  request lost to a failure counts nothing); ``num_hit_by_failure`` / ``mean_recovery_s``: requests
  with ``failovers > 0`` and the mean of their ``recovery_s`` (docs/model.md §12);
* ``memory_utilisation[j]`` = time-average of the KV bytes reserved on server j over the simulated
  horizon [first arrival, last completion], divided by its KV capacity (0 for a server with none);
  ``peak_memory_utilisation[j]`` the maximum.  Percentiles use numpy's default (linear).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from .simulator import RequestRecord, check_record


def memory_profile(records: Sequence[RequestRecord], num_servers: int):
    """Per server, the step function of physically reserved KV bytes implied by the per-request
    table: a completed request holds ``blocks × kv_bytes_per_block`` on each hop over
    ``[start_s, completion_s)``.  Returns ``(times, levels)`` lists per server (level k holds from
    times[k] to times[k+1])."""
    srv, t, delta = [], [], []
    for r in records:
        if not r.completed or r.route is None:
            continue
        for h in r.route.hops:
            b = h.blocks * r.kv_bytes_per_block
            srv += [h.server, h.server]
            t += [r.start_s, r.completion_s]
            delta += [b, -b]
    out_t: list[np.ndarray] = [np.zeros(0)] * num_servers
    out_l: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * num_servers
    if not srv:
        return out_t, out_l
    srv_a, t_a, d_a = np.asarray(srv), np.asarray(t, dtype=float), np.asarray(delta, dtype=np.int64)
    order = np.lexsort((d_a, t_a, srv_a))          # releases before starts at equal times
    srv_a, t_a, d_a = srv_a[order], t_a[order], d_a[order]
    bounds = np.searchsorted(srv_a, np.arange(num_servers + 1))
    for j in range(num_servers):
        a, b = bounds[j], bounds[j + 1]
        out_t[j] = t_a[a:b]
        out_l[j] = np.cumsum(d_a[a:b])
    return out_t, out_l


def summarize(records: Sequence[RequestRecord], capacity_bytes: Sequence[int]) -> dict:
    """The summary dictionary of one run (keys: docs/contracts.md §6).  Raises ``AssertionError`` if a
    completed record has non-finite or unordered times (the simulator never produces one)."""
    n = len(records)
    done = [r for r in records if r.completed]
    for r in done:
        check_record(r)
    reasons = Counter(r.reason for r in records if not r.completed)
    out: dict = {"num_requests": n, "num_completed": len(done), "num_rejected": n - len(done),
                 "rejected_reasons": dict(sorted(reasons.items())),
                 # requests whose output was cut at the maximum sequence / max_length (workload.over_length)
                 "num_truncated": sum(1 for r in records if r.truncated)}
    # churn (docs/model.md §12): requests moved off a failed or leaving server at least once, and the
    # mean of their recovery_s (0 when none was hit, so that summaries compare equal)
    hit = [r for r in records if getattr(r, "failovers", 0) > 0]
    out["num_hit_by_failure"] = len(hit)
    out["mean_recovery_s"] = float(np.mean([r.recovery_s for r in hit])) if hit else 0.0
    if not done:
        out.update({k: float("nan") for k in (
            "mean_per_token_time_s", "ttft_mean_s", "ttft_p50_s", "ttft_p95_s", "ttft_p99_s", "wait_mean_s",
            "wait_p95_s", "wait_max_s", "mean_hops", "throughput_tokens_per_s", "goodput_requests_per_s")})
        out["memory_utilisation"] = [0.0] * len(capacity_bytes)
        out["peak_memory_utilisation"] = [0.0] * len(capacity_bytes)
        return plain(out)
    arrival = np.array([r.arrival_s for r in done])
    completion = np.array([r.completion_s for r in done])
    tokens = np.array([r.output_tokens for r in done])
    ttft = np.array([r.first_token_s for r in done]) - arrival
    wait = np.array([r.wait_s for r in done])
    horizon = float(completion.max() - min(r.arrival_s for r in records))
    out.update({
        "mean_per_token_time_s": float((completion - arrival).sum() / tokens.sum()),
        "ttft_mean_s": float(ttft.mean()),
        "ttft_p50_s": float(np.percentile(ttft, 50)),
        "ttft_p95_s": float(np.percentile(ttft, 95)),
        "ttft_p99_s": float(np.percentile(ttft, 99)),
        "wait_mean_s": float(wait.mean()),
        "wait_p95_s": float(np.percentile(wait, 95)),
        "wait_max_s": float(wait.max()),
        "mean_hops": float(np.mean([r.hops for r in done])),
        "throughput_tokens_per_s": float(tokens.sum() / horizon) if horizon > 0 else float("nan"),
        "goodput_requests_per_s": float(len(done) / horizon) if horizon > 0 else float("nan"),
    })
    times, levels = memory_profile(records, len(capacity_bytes))
    util, peak = [], []
    for j, cap in enumerate(capacity_bytes):
        if cap <= 0 or len(times[j]) == 0 or horizon <= 0:
            util.append(0.0)
            peak.append(0.0)
            continue
        area = float(np.sum(levels[j][:-1] * np.diff(times[j])))
        util.append(float(area / (cap * horizon)))     # plain floats: capacities may be numpy ints
        peak.append(float(float(levels[j].max()) / cap))
    out["memory_utilisation"] = util
    out["peak_memory_utilisation"] = peak
    return plain(out)


def plain(value):
    """``value`` with numpy scalars turned into Python ``int``/``float``/``bool``, recursively through
    dicts, lists and tuples (so that a summary prints as ``0.5``, not ``np.float64(0.5)``); NaN stays."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = ["memory_profile", "plain", "summarize"]

"""Server models of the live engine (docs/model.md "Server models"; docs/contracts.md §3).

* ``independent`` — a step never waits for another session (the published semantics).
* ``serial`` — the PETALS server: its task pool does not batch steps of different sessions
  (petals ``server/task_pool.py``, ``PrioritizedTaskPool`` docstring), so a server runs one step at
  a time, FIFO over all sessions.  Step service times are known when the step arrives, so FIFO start
  = max(arrival, server busy-until) (Lindley's recursion), one event per step.
* ``batched`` — continuous batching (vLLM, Kwon et al., SOSP 2023): at each iteration boundary the
  steps waiting on the server run as one batch, taking :func:`batch_time_s`.
"""

from __future__ import annotations

from ..perf import batched_iteration_time_s, decode_flops_time_s, hop_compute_s

SERVER_MODELS = ("independent", "serial", "batched")


def union_blocks(spans) -> int:
    """Number of distinct blocks covered by inclusive ``(first, last)`` block ranges."""
    total, end = 0, -1
    for first, last in sorted(spans):
        if last > end:
            total += last - max(first, end + 1) + 1
            end = last
    return total


def batch_time_s(steps, sessions, tau_decode_s: float, flops_per_token_per_block: float, peak_flops: float,
                 overhead_s: float) -> float:
    """Time of one iteration of a ``batched`` server (seconds).

    ``steps`` are ``(session id, hop)`` pairs, ``sessions`` maps ids to
    :class:`~distllm_env.live.sessions.Session`.  Roofline (Williams et al., CACM 2009) per
    iteration: overhead + max(weight-read, compute), where

    * weight-read = τ_j × (distinct blocks the batch touches): τ_j is the calibrated batch-1 decode
      time per block, i.e. the memory-bound weight read (docs/contracts.md §2);
    * compute = Σ_decode steps m·F_tok/F_peak + Σ_prefill steps m·τ^I_j(l_in): a decode token costs
      ≈ 2 × parameters FLOPs per block (:attr:`ModelSpec.flops_per_token_per_block`) at the GPU's
      dense bf16 peak; a prefill step costs its calibrated prefill time.

    A batch of one decode step therefore costs m·τ_j (+ overhead), the independent model's time
    whenever decode is memory-bound (F_tok/F_peak < τ_j)."""
    spans = []
    compute = 0.0
    for sid, h in steps:
        s = sessions[sid]
        spans.append((s.first_blocks[h], s.last_blocks[h]))
        if s.done_tokens == 0:
            compute += s.comp_prefill_s[h]
        else:
            compute += decode_flops_time_s(s.blocks[h], flops_per_token_per_block, peak_flops)
    weight_read = hop_compute_s(tau_decode_s, union_blocks(spans))
    return float(batched_iteration_time_s(weight_read, compute, overhead_s))


__all__ = ["SERVER_MODELS", "batch_time_s", "union_blocks"]

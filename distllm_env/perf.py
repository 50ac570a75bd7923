"""The performance model of arXiv 2512.21884 as small pure functions (docs/model.md §2.3, §4.3).

One implementation, used by the simulator, the baselines and the environments.  All functions
accept scalars or numpy arrays (broadcasting), so the same formula serves a single hop and a whole
vector of candidate hops.

Notation (docs/model.md §1, §4): for client c and server j, ``t_cj`` is the per-token communication cost
(RTT + per-token overhead), ``t^I_cj(l_in)`` the per-prompt cost at prefill (RTT + prefill overhead),
``τ_j`` the decode time per block per token and ``τ^I_j(l_in)`` the prefill time per block; a hop
that processes ``m`` blocks costs ``t_cj + m·τ_j`` per decoded token and ``t^I_cj + m·τ^I_j`` at
prefill.
"""

from __future__ import annotations

import numpy as np


def token_cost_s(rtt_s, token_overhead_s):
    """t_cj = raw RTT + per-token overhead (serialisation and transfer of one embedding both ways).

    Source: docs/model.md §4.5 (100 ms overhead in the geographic runs, 50 ms in the clustered ones)."""
    return rtt_s + token_overhead_s


def prefill_comm_s(rtt_s, prefill_overhead_slope_s, prefill_overhead_intercept_s, prompt_tokens):
    """t^I_cj(l_in) = raw RTT + (slope · l_in + intercept): sending the prompt's hidden states.

    Source: docs/model.md §4.5 (0.7049·l_in + 67 ms geographic; 55 ms clustered)."""
    return rtt_s + prefill_overhead_slope_s * prompt_tokens + prefill_overhead_intercept_s


def hop_compute_s(tau_per_block_s, blocks):
    """Compute time of one hop's step at batch 1: m_ij · τ_j (decode) or m_ij · τ^I_j(l_in) (prefill)
    (docs/model.md §4.2).  The live engine keeps it apart from the hop's communication time."""
    return tau_per_block_s * blocks


def decode_flops_time_s(blocks, flops_per_token_per_block, peak_flops):
    """Compute-bound time of one decode token over ``blocks`` blocks: m · F_tok / F_peak (the compute
    side of the ``batched`` roofline, docs/model.md §11)."""
    return blocks * flops_per_token_per_block / peak_flops


def decode_hop_cost_s(token_cost, tau_decode_s, blocks):
    """Per-token decode cost of one hop: t^c_ij = t_cj + τ_j · m_ij (docs/model.md §4.3)."""
    return token_cost + hop_compute_s(tau_decode_s, blocks)


def prefill_hop_cost_s(prefill_comm, tau_prefill_s, blocks):
    """Prefill cost of one hop: t^I_cj(l_in) + m_ij · τ^I_j(l_in) (docs/model.md §4.3)."""
    return prefill_comm + hop_compute_s(tau_prefill_s, blocks)


def first_token_time_s(prefill_hop_costs_s) -> float:
    """Time of the prefill pass that yields the first token: Σ_hops [t^I_cj + m·τ^I_j]."""
    return float(np.sum(prefill_hop_costs_s))


def service_time_s(prefill_hop_costs_s, decode_hop_costs_s, output_tokens: int) -> float:
    """T(c, p) = Σ_hops [t^I_cj + m·τ^I_j] + (l_out − 1) · Σ_hops [t_cj + m·τ_j] (docs/model.md §4.3).

    No slowdown from concurrency: a session's time does not depend on other sessions (§2.2)."""
    return float(np.sum(prefill_hop_costs_s)) + (output_tokens - 1) * float(np.sum(decode_hop_costs_s))


def static_request_cost_terms_s(prefill_comm, tau_prefill_s, token_cost, tau_decode_s, output_tokens):
    """The two terms of :func:`static_request_cost_s` for a hop: ``(fixed_s, per_block_s)`` =
    (t^I_cj + (l−1)·t_cj, τ^I_j + (l−1)·τ_j), so that the hop costs fixed_s + per_block_s·m_ij
    (arXiv 2512.21884 WS-RR link cost; docs/model.md).  Seconds; broadcasts over arrays."""
    l1 = output_tokens - 1
    return prefill_comm + l1 * token_cost, tau_prefill_s + l1 * tau_decode_s


def static_request_cost_s(prefill_comm, tau_prefill_s, token_cost, tau_decode_s, blocks, output_tokens):
    """Prefill-aware static cost of one hop for one request, the WS-RR link cost without waiting:
    [t^I_cj + (l−1)·t_cj] + [τ^I_j + (l−1)·τ_j]·m_ij (docs/model.md §7, docs/contracts.md §9)."""
    fixed, per_block = static_request_cost_terms_s(prefill_comm, tau_prefill_s, token_cost, tau_decode_s,
                                                   output_tokens)
    return fixed + per_block * blocks


def batched_iteration_time_s(weight_read_s, compute_s, overhead_s=0.0):
    """One iteration of a continuous-batching server: overhead + max(weight-read time, compute time).

    The roofline model (Williams, Waterman, Patterson, "Roofline", CACM 2009): a kernel takes the
    larger of its memory time and its compute time.  Applied per iteration of a continuous-batching
    server (vLLM, Kwon et al., SOSP 2023): the weights of the blocks the batch touches are read once
    per iteration, while compute grows with the batch's tokens.  Here ``weight_read_s`` is the
    calibrated batch-1 decode time of those blocks (Σ_blocks τ_j), ``compute_s`` the batch's compute
    time, ``overhead_s`` a fixed per-iteration cost (docs/model.md "Server models").  Seconds;
    broadcasts over arrays."""
    return overhead_s + np.maximum(weight_read_s, compute_s)


def weights_bytes(block_bytes: int, count):
    """s_m · m_j: bytes of the hosted blocks' weights."""
    return block_bytes * count


def leftover_kv_capacity_bytes(memory_bytes, block_bytes: int, count):
    """KV bytes left after the weights: M_j − s_m·m_j, and 0 for a server that hosts nothing."""
    count = np.asarray(count)
    left = np.asarray(memory_bytes, dtype=np.int64) - np.int64(block_bytes) * count
    return np.where(count > 0, np.maximum(left, 0), 0)


def cache_slots(memory_bytes, block_bytes: int, count, kv_block_bytes: int):
    """⌊(M_j − s_m·m_j) / s_c⌋: sessions-blocks of KV cache a server can hold (docs/model.md §2.3)."""
    return leftover_kv_capacity_bytes(memory_bytes, block_bytes, count) // int(kv_block_bytes)


def conservative_block_count(memory_bytes, block_bytes: int, kv_block_bytes: int, sessions: int,
                             num_blocks: int, max_blocks=None):
    """CG-BP step 1: m_j = min(⌊M_j / (s_m + s_c·|R|)⌋, L), and the GPU's block cap if any — leaves room
    for the KV cache of ``sessions`` sessions through every hosted block (docs/model.md §6)."""
    m = np.minimum(np.asarray(memory_bytes, dtype=np.int64) // (int(block_bytes) + int(kv_block_bytes) * int(sessions)),
                   num_blocks)
    if max_blocks is not None:
        caps = np.array([num_blocks if c is None else c for c in np.atleast_1d(max_blocks)], dtype=np.int64)
        m = np.minimum(m, caps if np.ndim(m) else caps[0])
    return m


def petals_throughput_rps(forward_rps, network_rps, count):
    """PETALS' announced server throughput: min(forward_rps / ((1 + m)/2), network_rps).

    The mean number of blocks a request uses on a span of m blocks is (m+1)/2 (petals
    ``server/throughput.py``; docs/model.md §8.2)."""
    return np.minimum(forward_rps / ((1.0 + np.asarray(count)) / 2.0), network_rps)


__all__ = [
    "batched_iteration_time_s", "cache_slots", "decode_flops_time_s", "hop_compute_s", "conservative_block_count", "decode_hop_cost_s", "first_token_time_s", "leftover_kv_capacity_bytes",
    "petals_throughput_rps", "prefill_comm_s", "prefill_hop_cost_s", "service_time_s",
    "static_request_cost_s", "static_request_cost_terms_s", "token_cost_s", "weights_bytes",
]

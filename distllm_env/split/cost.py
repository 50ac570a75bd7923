"""Per-layer cost model of split inference (arXiv 2410.10759; docs/model.md §10.1, [R]).

Standard transformer arithmetic, one multiply-add = 2 FLOPs, FFN width 4·d:

* a transformer block processing a prompt of ``n`` tokens (prefill, dense attention):
  ``24·n·d² + 4·n²·d`` — QKV + output projections 8·n·d², FFN 16·n·d², scores QKᵀ 2·n²·d,
  attention × V 2·n²·d (docs/model.md §10.1; Kaplan et al. 2020, "Scaling Laws for Neural Language
  Models", Table 1).  For a block of known parameter count the dense part 24·d² per token is
  replaced by 2 × parameters (GQA / SwiGLU blocks of the catalog models; equal to 24·d² for a
  standard block);
* one decode step at context length ``t`` with a KV cache: ``24·d² + 4·t·d``;
* token embedding: 4·d per token (Kaplan et al. 2020, Table 1, "Embed");
* LM head (de-embedding): 2·d·V per position whose logits are needed (Kaplan et al. 2020, Table 1);
* a classifier head on one position: 2·d·C (+ 2·d² for BERT's pooler);
* ViT patch embedding: a (P²·C_in) → d projection per patch, 2·P²·C_in·d FLOPs per patch;
* activation crossing a boundary: ``n·d·bytes`` bytes (prefill) and ``d·bytes`` per decode step.

Every function takes plain numbers (or numpy arrays, broadcasting) and returns FLOPs or bytes.
"""

from __future__ import annotations

import numpy as np

#: Bytes of a token id on the wire (int32).
TOKEN_ID_BYTES = 4


def block_prefill_flops(prompt_tokens, d_model, dense_flops_per_token=None):
    """Prefill FLOPs of one transformer block: D·n + 4·n²·d, D = 24·d² unless given (docs/model.md §10.1)."""
    n = np.asarray(prompt_tokens, dtype=float)
    dense = 24.0 * d_model ** 2 if dense_flops_per_token is None else float(dense_flops_per_token)
    return dense * n + 4.0 * n * n * d_model


def block_decode_flops(context_tokens, d_model, dense_flops_per_token=None):
    """FLOPs of one decode step through one block at context length t: D + 4·t·d (docs/model.md §10.1)."""
    t = np.asarray(context_tokens, dtype=float)
    dense = 24.0 * d_model ** 2 if dense_flops_per_token is None else float(dense_flops_per_token)
    return dense + 4.0 * t * d_model


def block_decode_total_flops(prompt_tokens, decode_steps, d_model, dense_flops_per_token=None):
    """FLOPs of ``g`` decode steps through one block after a prompt of n tokens.

    Step i (1 ≤ i ≤ g) attends over t = n + i tokens, so the total is
    Σ_i (D + 4·(n+i)·d) = g·D + 4·d·(g·n + g·(g+1)/2)."""
    n = np.asarray(prompt_tokens, dtype=float)
    g = np.asarray(decode_steps, dtype=float)
    dense = 24.0 * d_model ** 2 if dense_flops_per_token is None else float(dense_flops_per_token)
    return g * dense + 4.0 * d_model * (g * n + g * (g + 1.0) / 2.0)


def embed_flops(tokens, d_model):
    """Token (+ position) embedding: 4·d FLOPs per token (Kaplan et al. 2020, Table 1)."""
    return 4.0 * d_model * np.asarray(tokens, dtype=float)


def patch_embed_flops(patches, patch_size, channels, d_model):
    """ViT patch projection: 2·(P²·C_in)·d FLOPs per patch (a linear layer on flattened patches)."""
    return 2.0 * patch_size ** 2 * channels * d_model * np.asarray(patches, dtype=float)


def lm_head_flops(positions, d_model, vocab_size):
    """LM head (de-embedding): 2·d·V per position whose logits are computed (Kaplan et al. 2020)."""
    return 2.0 * d_model * vocab_size * np.asarray(positions, dtype=float)


def classifier_head_flops(d_model, num_classes, pooler: bool):
    """A classifier on one position: 2·d·C, plus a d×d pooler (2·d²) for BERT."""
    return 2.0 * d_model * num_classes + (2.0 * d_model ** 2 if pooler else 0.0)


def activation_bytes(tokens, d_model, bytes_per_value: int = 2):
    """Bytes of the hidden states of ``tokens`` positions: n·d·bytes (docs/model.md §10.1)."""
    return np.asarray(tokens, dtype=float) * d_model * bytes_per_value


def transfer_time_s(message_bytes, messages, bandwidth_bits_per_s, rtt_s):
    """One-way time of ``messages`` messages totalling ``message_bytes``: bytes·8/B + messages·RTT/2.

    Each message pays the payload over the link plus half the round-trip time as propagation delay
    (docs/model.md §10 item 2: u_l = a_l/B_up + RTT/2)."""
    return np.asarray(message_bytes, dtype=float) * 8.0 / bandwidth_bits_per_s + np.asarray(messages) * rtt_s / 2.0


__all__ = [
    "TOKEN_ID_BYTES", "activation_bytes", "block_decode_flops", "block_decode_total_flops", "block_prefill_flops",
    "classifier_head_flops", "embed_flops", "lm_head_flops", "patch_embed_flops", "transfer_time_s",
]

"""The record types of the catalog (model, GPU, client device, per-(model, GPU) calibration) and its
unit constants (docs/contracts.md §1–§2).  Moved out of :mod:`distllm_env.catalog`, which still
re-exports every name; the built-in entries are in :mod:`distllm_env.catalog_data`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GB = 10**9
GIB = 2**30

#: NF4 bytes per parameter, PETALS' empirical figure (petals ``server/block_utils.py``; docs/model.md
#: §8.1).
NF4_BYTES_PER_PARAM = 4.25 / 8
#: Weight overhead factor PETALS applies on top of the raw parameter bytes (+1 %, same source).
WEIGHT_OVERHEAD = 1.01
#: Bytes per cached K or V value (fp16/bf16), docs/contracts.md §1.
KV_BYTES_PER_VALUE = 2
#: Bits PETALS counts per token on the wire: one fp16 hidden vector (petals ``server/throughput.py``).
NETWORK_BITS_PER_HIDDEN_VALUE = 16


@dataclass(frozen=True)
class ModelSpec:
    """A transformer split into ``num_blocks`` blocks (the paper's L)."""

    name: str
    num_blocks: int
    d_model: int
    num_heads: int
    num_kv_heads: int
    params_per_block: int
    bytes_per_param: float = NF4_BYTES_PER_PARAM
    weight_overhead: float = WEIGHT_OVERHEAD
    max_sequence_tokens: int = 2048
    source: str = ""

    @property
    def kv_group_size(self) -> int:
        """Attention heads per KV head (1 for multi-head attention, 8 for Llama-2-70B)."""
        return self.num_heads // self.num_kv_heads

    @property
    def block_bytes(self) -> int:
        """s_m: bytes of one block's weights = params × bytes/param × 1.01 (PETALS' rule)."""
        return int(round(self.params_per_block * self.bytes_per_param * self.weight_overhead))

    @property
    def flops_per_token_per_block(self) -> float:
        """Dense FLOPs per token through one block ≈ 2 × parameters (one multiply-add per weight)."""
        return 2.0 * self.params_per_block

    def kv_bytes_per_block(self, prompt_tokens: int, output_tokens: int) -> int:
        """KV bytes one session holds per processed block (docs/contracts.md §1):
        2 (K and V) · (d_model / kv_group_size) · (prompt + output tokens) · 2 bytes."""
        return 2 * (self.d_model // self.kv_group_size) * (prompt_tokens + output_tokens) * KV_BYTES_PER_VALUE


@dataclass(frozen=True)
class GpuSpec:
    """A server GPU (or GPU slice)."""

    name: str
    memory_bytes: int
    memory_bandwidth_bytes_per_s: float
    dense_bf16_flops: float
    max_blocks: int | None = None  # hard cap on hosted blocks (the published code caps MIG at 4)
    source: str = ""


@dataclass(frozen=True)
class DeviceSpec:
    """A client device that may run some blocks itself (split inference, arXiv 2410.10759)."""

    name: str
    peak_flops: float
    efficiency: float
    memory_bytes: int
    uplink_bits_per_s: float
    downlink_bits_per_s: float
    source: str = ""
    #: memory bandwidth; ``None`` models the device as compute-bound only (FLOPs / effective FLOP/s)
    memory_bandwidth_bytes_per_s: float | None = None

    @property
    def effective_flops(self) -> float:
        """Sustained FLOP/s = peak × efficiency."""
        return self.peak_flops * self.efficiency

    def compute_time_s(self, flops, bytes_moved=0.0):
        """Roofline time of a kernel: max(FLOPs / effective FLOP/s, bytes read / memory bandwidth).
        Decoding one token reads every weight of a block once, so on a client it is usually
        bandwidth-bound (the same reason the catalog derives τ from memory bandwidth, docs/contracts.md §2)."""
        t = flops / self.effective_flops
        if self.memory_bandwidth_bytes_per_s is None:
            return t
        return np.maximum(t, bytes_moved / self.memory_bandwidth_bytes_per_s)


@dataclass(frozen=True)
class Calibration:
    """Timing of one (model, GPU) pair."""

    model: str
    gpu: str
    tau_decode_s: float
    prefill_slope_s_per_token: float
    prefill_intercept_s: float
    inference_rps: float
    forward_rps: float
    network_rps: float
    derived: bool = False
    source: str = ""

    def tau_prefill_s(self, prompt_tokens: float) -> float:
        """τ^I(l_in) = slope · l_in + intercept: prefill time of the whole prompt through one block."""
        return self.prefill_slope_s_per_token * prompt_tokens + self.prefill_intercept_s


__all__ = ["GB", "GIB", "KV_BYTES_PER_VALUE", "NETWORK_BITS_PER_HIDDEN_VALUE", "NF4_BYTES_PER_PARAM",
           "WEIGHT_OVERHEAD", "Calibration", "DeviceSpec", "GpuSpec", "ModelSpec"]

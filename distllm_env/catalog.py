"""Catalog of models, GPUs, client devices and per-(model, GPU) calibration (docs/contracts.md §2).

Every constant carries its source.  Source classes (docs/fidelity.md):

* **measured** — measured on real hardware by the authors of arXiv 2512.21884 and shipped with their
  public simulator (``TingyangSunJeff/LLM_inference_simulator``, MIT licence);
* **published** — a vendor datasheet, a model's public ``config.json``, or a paper;
* **derived** — computed from the two above by the documented rule (:func:`derive_calibration`).

Decode time per block per token ``tau_decode_s`` and prefill time per block
``tau_prefill_s(l_in) = slope * l_in + intercept`` belong to a (model, GPU) *pair*, not to a GPU.
Only BLOOM-176B on an A100-80GB and on a MIG 1g.10gb slice are measured; every other pair is derived
and marked ``derived=True``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import numpy as np

from .errors import ScenarioError

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


# --------------------------------------------------------------------------------------------------
# Built-in entries
# --------------------------------------------------------------------------------------------------

_BUILTIN_MODELS = (
    ModelSpec(
        name="BLOOM-176B", num_blocks=70, d_model=14336, num_heads=112, num_kv_heads=112,
        # 12·d² + 13·d = 2,466,437,120 parameters per block (docs/model.md §2)
        params_per_block=2_466_437_120, max_sequence_tokens=2048,
        source="bigscience/bloom config.json (n_layer 70, hidden 14336, n_head 112); "
               "params per block and max sequence 2048 from arXiv 2512.21884 (docs/model.md §2; docs/contracts.md §4)",
    ),
    ModelSpec(
        name="Llama-2-70B", num_blocks=80, d_model=8192, num_heads=64, num_kv_heads=8,
        # q,o: 2·8192² ; k,v: 2·8192·1024 ; MLP: 3·8192·28672 ; 2 RMSNorms: 2·8192
        params_per_block=855_654_400, max_sequence_tokens=4096,
        source="meta-llama/Llama-2-70b-hf config.json (80 layers, hidden 8192, 64 heads, 8 KV heads, "
               "intermediate 28672, max_position_embeddings 4096)",
    ),
    ModelSpec(
        name="Llama-3-70B", num_blocks=80, d_model=8192, num_heads=64, num_kv_heads=8,
        params_per_block=855_654_400, max_sequence_tokens=8192,
        source="meta-llama/Meta-Llama-3-70B config.json (same block shape as Llama-2-70B, "
               "max_position_embeddings 8192)",
    ),
    ModelSpec(
        name="Llama-3.1-405B", num_blocks=126, d_model=16384, num_heads=128, num_kv_heads=8,
        # q,o: 2·16384² ; k,v: 2·16384·1024 ; MLP: 3·16384·53248 ; 2 RMSNorms: 2·16384
        params_per_block=3_187_703_808, max_sequence_tokens=131072,
        source="meta-llama/Llama-3.1-405B config.json (126 layers, hidden 16384, 128 heads, 8 KV heads, "
               "intermediate 53248, max_position_embeddings 131072)",
    ),
    ModelSpec(
        name="Falcon-180B", num_blocks=80, d_model=14848, num_heads=232, num_kv_heads=8,
        # q,o: 2·14848² ; k,v: 2·14848·512 ; MLP: 2·14848·59392 ; 2 LayerNorms with bias: 4·14848
        params_per_block=2_219_894_784, max_sequence_tokens=2048,
        source="tiiuae/falcon-180B config.json (80 layers, hidden 14848, 232 heads, 8 KV heads, "
               "4·hidden MLP, parallel attention, 2048 context)",
    ),
)

_BUILTIN_GPUS = (
    GpuSpec(
        name="A100-80GB", memory_bytes=int(86.13 * GB), memory_bandwidth_bytes_per_s=1935e9,
        dense_bf16_flops=312e12,
        source="memory 86.13 GB as used by the published simulator's sweeps (docs/model.md §4.5, measured); "
               "1,935 GB/s and 312 TFLOPS dense BF16 from the NVIDIA A100 80GB PCIe datasheet",
    ),
    GpuSpec(
        name="MIG-1g.10gb", memory_bytes=int(9.1 * GB), memory_bandwidth_bytes_per_s=1935e9 / 8,
        dense_bf16_flops=312e12 / 7, max_blocks=4,
        source="memory 9.1 GB and the 4-block cap from the published simulator (docs/model.md §4.5, §6); "
               "1/8 of the A100's memory bandwidth and 1/7 of its compute per the NVIDIA MIG user guide",
    ),
    GpuSpec(
        name="H100-80GB", memory_bytes=80 * GIB, memory_bandwidth_bytes_per_s=3350e9,
        dense_bf16_flops=989e12,
        source="NVIDIA H100 SXM5 datasheet (80 GB HBM3, 3.35 TB/s, 989 TFLOPS dense BF16)",
    ),
    GpuSpec(
        name="V100-32GB", memory_bytes=32 * GIB, memory_bandwidth_bytes_per_s=900e9,
        dense_bf16_flops=125e12,
        source="NVIDIA V100 SXM2 datasheet (32 GB HBM2, 900 GB/s, 125 TFLOPS FP16 tensor; no BF16, FP16 used)",
    ),
    GpuSpec(
        name="A10G", memory_bytes=24 * GIB, memory_bandwidth_bytes_per_s=600e9,
        dense_bf16_flops=70e12,
        source="AWS EC2 G5 documentation (NVIDIA A10G, 24 GB GDDR6, 600 GB/s); ~70 TFLOPS dense FP16/BF16 "
               "tensor (approximate public figure)",
    ),
    GpuSpec(
        name="L4", memory_bytes=24 * GIB, memory_bandwidth_bytes_per_s=300e9,
        dense_bf16_flops=121e12,
        source="NVIDIA L4 datasheet (24 GB GDDR6, 300 GB/s, 242 TFLOPS BF16 with sparsity → 121 dense)",
    ),
    GpuSpec(
        name="T4", memory_bytes=16 * GIB, memory_bandwidth_bytes_per_s=320e9,
        dense_bf16_flops=65e12,
        source="NVIDIA T4 datasheet (16 GB GDDR6, 320 GB/s, 65 TFLOPS FP16 tensor; no BF16, FP16 used)",
    ),
    GpuSpec(
        name="RTX-3090", memory_bytes=24 * GIB, memory_bandwidth_bytes_per_s=936e9,
        dense_bf16_flops=71e12,
        source="NVIDIA Ampere GA102 whitepaper (24 GB GDDR6X, 936 GB/s, 71 TFLOPS BF16 tensor with FP32 accumulate)",
    ),
    GpuSpec(
        name="RTX-4090", memory_bytes=24 * GIB, memory_bandwidth_bytes_per_s=1008e9,
        dense_bf16_flops=165.2e12,
        source="NVIDIA Ada Lovelace whitepaper (24 GB GDDR6X, 1,008 GB/s, 165.2 TFLOPS BF16 tensor with FP32 accumulate)",
    ),
)

_BUILTIN_DEVICES = (
    # Client devices for split inference.  Efficiency (sustained / peak FLOP/s) 0.3 is one assumption shared by
    # every device, so only the sourced peak figures differ.  Links are Ookla Speedtest medians: 5G for the
    # phone, fixed broadband for the others.
    DeviceSpec(
        name="phone-soc", peak_flops=2.15e12, efficiency=0.3, memory_bytes=8 * GIB,
        uplink_bits_per_s=21.08e6, downlink_bits_per_s=166.13e6, memory_bandwidth_bytes_per_s=51.2e9,
        source="Apple A17 Pro (iPhone 15 Pro): 6-core GPU, 768 ALUs at 1.398 GHz = 2.15 TFLOPS FP32, FP16 at "
               "the same rate (third-party GPU database hmc-tech.com); 8 GB LPDDR5-6400 on a 64-bit bus = 51.2 GB/s; efficiency 0.3 assumed; "
               "links: Ookla Q3 2021 global 5G medians (166.13 Mbit/s down, 21.08 Mbit/s up)",
    ),
    DeviceSpec(
        name="laptop-gpu", peak_flops=29.1e12, efficiency=0.3, memory_bytes=8 * GIB,
        uplink_bits_per_s=48.36e6, downlink_bits_per_s=93.99e6, memory_bandwidth_bytes_per_s=256e9,
        source="NVIDIA RTX 4060 Laptop GPU: 3072 CUDA cores, boost up to 2370 MHz at 115 W TGP → 14.6 TFLOPS "
               "FP32; GeForce Ada tensor cores run FP16 with FP32 accumulate at 2× the FP32 rate (Ada whitepaper: "
               "RTX 4090 82.6 vs 165.2 TFLOPS) → 29.1 TFLOPS; 8 GB GDDR6, 128-bit at 16 Gbps = 256 GB/s; efficiency 0.3 assumed; "
               "links: Ookla Speedtest Global Index Aug 2024 global fixed-broadband medians "
               "(93.99 Mbit/s down, 48.36 Mbit/s up)",
    ),
    DeviceSpec(
        name="jetson-orin", peak_flops=42.5e12, efficiency=0.3, memory_bytes=64 * GIB,
        uplink_bits_per_s=48.36e6, downlink_bits_per_s=93.99e6, memory_bandwidth_bytes_per_s=204.8e9,
        source="NVIDIA Jetson AGX Orin 64GB technical brief: GPU 170 sparse INT8 TOPS = 85 dense INT8 TOPS, "
               "dense FP16 tensor at half the INT8 rate → 42.5 TFLOPS; 64 GB LPDDR5 at 204.8 GB/s; efficiency 0.3 assumed; "
               "links: Ookla Speedtest Global Index Aug 2024 global fixed-broadband medians "
               "(93.99 Mbit/s down, 48.36 Mbit/s up)",
    ),
    DeviceSpec(
        name="desktop-gpu", peak_flops=165.2e12, efficiency=0.3, memory_bytes=24 * GIB,
        uplink_bits_per_s=48.36e6, downlink_bits_per_s=93.99e6, memory_bandwidth_bytes_per_s=1008e9,
        source="NVIDIA RTX 4090 (Ada Lovelace whitepaper: 165.2 TFLOPS dense FP16/BF16 tensor with FP32 "
               "accumulate, 24 GB GDDR6X at 1,008 GB/s); efficiency 0.3 assumed; "
               "links: Ookla Speedtest Global Index Aug 2024 global fixed-broadband medians "
               "(93.99 Mbit/s down, 48.36 Mbit/s up)",
    ),
)

_ANCHOR = ("BLOOM-176B", "A100-80GB")

_MEASURED_SOURCE = (
    "measured by the authors of arXiv 2512.21884; constants of their public simulator "
    "(TingyangSunJeff/LLM_inference_simulator, MIT) and its throughput_v5.json (docs/model.md §4.5)"
)

_BUILTIN_CALIBRATIONS = (
    Calibration(
        model="BLOOM-176B", gpu="A100-80GB", tau_decode_s=3.2197e-3,
        prefill_slope_s_per_token=0.0743e-3, prefill_intercept_s=32.99e-3,
        inference_rps=369.2226095704935, forward_rps=20829.38146541331, network_rps=3020.3700586885343,
        source=_MEASURED_SOURCE,
    ),
    Calibration(
        model="BLOOM-176B", gpu="MIG-1g.10gb", tau_decode_s=16.2488e-3,
        prefill_slope_s_per_token=0.1041e-3, prefill_intercept_s=206.3547e-3,
        inference_rps=61.55298253944563, forward_rps=2757.7243405599083, network_rps=3138.1039624670034,
        source=_MEASURED_SOURCE,
    ),
)


@dataclass(frozen=True)
class Catalog:
    """Immutable set of models, GPUs, devices and explicit calibration pairs.

    :meth:`calibration` returns an explicit pair when there is one and otherwise derives it with
    :func:`derive_calibration`.
    """

    models: Mapping[str, ModelSpec]
    gpus: Mapping[str, GpuSpec]
    devices: Mapping[str, DeviceSpec]
    calibrations: Mapping[tuple[str, str], Calibration] = field(default_factory=dict)

    def model(self, name: str, path: str = "model") -> ModelSpec:
        if name not in self.models:
            raise ScenarioError(path, f"unknown model {_short(name)}; expected one of {sorted(self.models)}")
        return self.models[name]

    def gpu(self, name: str, path: str = "gpu") -> GpuSpec:
        if name not in self.gpus:
            raise ScenarioError(path, f"unknown GPU {_short(name)}; expected one of {sorted(self.gpus)}")
        return self.gpus[name]

    def device(self, name: str, path: str = "device") -> DeviceSpec:
        if name not in self.devices:
            raise ScenarioError(path, f"unknown device {_short(name)}; expected one of {sorted(self.devices)}")
        return self.devices[name]

    def calibration(self, model: str, gpu: str) -> Calibration:
        """The (model, GPU) calibration: explicit if present, otherwise derived (``derived=True``)."""
        key = (model, gpu)
        if key in self.calibrations:
            return self.calibrations[key]
        return derive_calibration(self.model(model), self.gpu(gpu), self)

    def extended(
        self,
        models: Mapping[str, ModelSpec] = (),
        gpus: Mapping[str, GpuSpec] = (),
        devices: Mapping[str, DeviceSpec] = (),
        calibrations: Mapping[tuple[str, str], Calibration] = (),
    ) -> "Catalog":
        """A new catalog with extra or replaced entries (scenario-local catalog entries)."""
        return Catalog(
            models=MappingProxyType({**self.models, **dict(models)}),
            gpus=MappingProxyType({**self.gpus, **dict(gpus)}),
            devices=MappingProxyType({**self.devices, **dict(devices)}),
            calibrations=MappingProxyType({**self.calibrations, **dict(calibrations)}),
        )


def derive_calibration(model: ModelSpec, gpu: GpuSpec, catalog: Catalog) -> Calibration:
    """Derive a (model, GPU) calibration from the measured BLOOM-176B × A100-80GB pair (docs/contracts.md §2).

    * decode is memory-bandwidth bound:
      τ = τ(BLOOM, A100) × bytes_per_block(model)/bytes_per_block(BLOOM) × bandwidth(A100)/bandwidth(gpu);
    * prefill is compute bound: τ^I's slope and intercept scale with FLOPs per block over dense
      bf16 FLOP/s, i.e. × params(model)/params(BLOOM) × flops(A100)/flops(gpu);
    * PETALS rps: inference = 1/τ; forward scales like prefill; network keeps the anchor's measured
      link speed (bits/s) expressed in this model's hidden vectors (d_model × 16 bits per token).
    """
    anchor_model_name, anchor_gpu_name = _ANCHOR
    if (anchor_model_name, anchor_gpu_name) not in catalog.calibrations:
        raise ScenarioError(
            "gpus", f"cannot derive a calibration for ({model.name}, {gpu.name}): the anchor pair "
                    f"{_ANCHOR} is missing from the catalog; give this pair's calibration explicitly")
    anchor = catalog.calibrations[(anchor_model_name, anchor_gpu_name)]
    base_model = catalog.models[anchor_model_name]
    base_gpu = catalog.gpus[anchor_gpu_name]
    for label, value in (("memory_bandwidth_gbps", gpu.memory_bandwidth_bytes_per_s),
                         ("bf16_tflops", gpu.dense_bf16_flops)):
        if not value > 0:
            raise ScenarioError(f"gpus.{gpu.name}.{label}",
                                "must be > 0 to derive a calibration (or give the pair's calibration)")
    decode_scale = (model.block_bytes / base_model.block_bytes) * (
        base_gpu.memory_bandwidth_bytes_per_s / gpu.memory_bandwidth_bytes_per_s)
    prefill_scale = (model.flops_per_token_per_block / base_model.flops_per_token_per_block) * (
        base_gpu.dense_bf16_flops / gpu.dense_bf16_flops)
    tau = anchor.tau_decode_s * decode_scale
    network_bits_per_s = anchor.network_rps * base_model.d_model * NETWORK_BITS_PER_HIDDEN_VALUE
    return Calibration(
        model=model.name, gpu=gpu.name, tau_decode_s=tau,
        prefill_slope_s_per_token=anchor.prefill_slope_s_per_token * prefill_scale,
        prefill_intercept_s=anchor.prefill_intercept_s * prefill_scale,
        inference_rps=1.0 / tau,
        forward_rps=anchor.forward_rps / prefill_scale,
        network_rps=network_bits_per_s / (model.d_model * NETWORK_BITS_PER_HIDDEN_VALUE),
        derived=True,
        source=(f"derived from {anchor_model_name} × {anchor_gpu_name} (docs/contracts.md §2): decode × "
                f"{decode_scale:.4g} (weight bytes × memory bandwidth), prefill × {prefill_scale:.4g} "
                f"(FLOPs × dense bf16 FLOP/s)"),
    )


def calibration_from_petals_json(path: str | Path, entry: str, model: ModelSpec, gpu: str,
                                 field_path: str = "calibration") -> Calibration:
    """Import a PETALS ``throughput_v5.json`` cache entry as a calibration.

    PETALS stores per-block tokens/s: ``inference_rps`` (1 token/step with cache) gives
    τ = 1/inference_rps; ``forward_rps`` (1024-token forward, no cache) gives a prefill time
    τ^I(l_in) = l_in / forward_rps (slope only, no intercept).  Source: petals ``server/throughput.py``
    (docs/model.md §8.2).
    """
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ScenarioError(field_path, f"PETALS throughput file {_short(str(path))} is not UTF-8 text "
                                        f"(byte at offset {exc.start})") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise ScenarioError(field_path, f"cannot read PETALS throughput file {_short(str(path))}: "
                                        f"{' '.join(str(exc).split())[:120]}") from None
    if not isinstance(data, dict):
        raise ScenarioError(field_path, f"PETALS throughput file {_short(str(path))} must hold a JSON object "
                                        f"(entry → record), got {type(data).__name__}")
    if entry not in data:
        names = sorted(map(str, data))
        raise ScenarioError(field_path, f"entry {_short(entry)} not in {_short(str(path))}; entries: "
                                        f"{_short(names, 200)}")
    rec = data[entry]
    if not isinstance(rec, dict):
        raise ScenarioError(field_path, f"entry {_short(entry)} must be a JSON object with inference_rps, "
                                        f"forward_rps and network_rps, got {type(rec).__name__}")
    try:
        inference, forward, network = (float(rec[k]) for k in ("inference_rps", "forward_rps", "network_rps"))
    except (KeyError, TypeError, ValueError):
        raise ScenarioError(field_path, f"entry {_short(entry)} must hold numeric inference_rps, forward_rps "
                                        "and network_rps") from None
    except OverflowError:
        raise ScenarioError(field_path, f"entry {_short(entry)} holds a number too large for a float") from None
    for name, value in (("inference_rps", inference), ("forward_rps", forward), ("network_rps", network)):
        if not (math.isfinite(value) and value > 0):
            raise ScenarioError(f"{field_path}.{name}", f"must be a positive finite number, got {value!r}")
    return Calibration(
        model=model.name, gpu=gpu, tau_decode_s=1.0 / inference, prefill_slope_s_per_token=1.0 / forward,
        prefill_intercept_s=0.0, inference_rps=inference, forward_rps=forward, network_rps=network,
        derived=False, source=f"PETALS throughput cache {Path(path).name}[{entry}]",
    )


def _short(value, limit: int = 60) -> str:
    """A repr cut to ``limit`` characters (user values echoed into errors stay short)."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def default_catalog() -> Catalog:
    """The built-in catalog: five models, nine GPUs, four client devices, two measured pairs."""
    return _DEFAULT


_DEFAULT = Catalog(
    models=MappingProxyType({m.name: m for m in _BUILTIN_MODELS}),
    gpus=MappingProxyType({g.name: g for g in _BUILTIN_GPUS}),
    devices=MappingProxyType({d.name: d for d in _BUILTIN_DEVICES}),
    calibrations=MappingProxyType({(c.model, c.gpu): c for c in _BUILTIN_CALIBRATIONS}),
)

__all__ = [
    "Calibration", "Catalog", "DeviceSpec", "GpuSpec", "ModelSpec", "calibration_from_petals_json",
    "default_catalog", "derive_calibration", "GB", "GIB", "NF4_BYTES_PER_PARAM", "WEIGHT_OVERHEAD",
]

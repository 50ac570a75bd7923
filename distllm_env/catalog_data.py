"""The built-in entries of the catalog: models, GPUs, client devices and the measured (model, GPU)
calibrations, each with its source (docs/contracts.md §2).  Data only; :mod:`distllm_env.catalog`
assembles them into :func:`~distllm_env.catalog.default_catalog`.
"""

from __future__ import annotations

from .catalog_specs import GB, GIB, Calibration, DeviceSpec, GpuSpec, ModelSpec


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

"""The catalog sections of a scenario (``models:``, ``gpus:`` with ``calibration:``, ``devices:``).

:func:`parse_catalog` extends the built-in catalog (:mod:`distllm_env.catalog`) with a scenario's own
entries; units are converted here (GB → bytes, TFLOP/s → FLOP/s, ms → s) and every converted value is
checked finite.  Counts are bounded by :mod:`distllm_env.limits`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Mapping

from . import validation as v
from .catalog import (GB, Calibration, Catalog, DeviceSpec, GpuSpec, ModelSpec, NF4_BYTES_PER_PARAM,
                      calibration_from_petals_json, default_catalog)
from .errors import ScenarioError
from .limits import (MAX_BLOCKS_PER_GPU, MAX_D_MODEL, MAX_DURATION_S, MAX_HEADS, MAX_MEMORY_GB, MAX_NUM_BLOCKS,
                     MAX_PARAMS_PER_BLOCK, MAX_TOKENS)

QUANTIZATION_BYTES = {"nf4": NF4_BYTES_PER_PARAM, "int8": 1.0, "bf16": 2.0, "fp16": 2.0}
SHIPPED_PETALS_JSON = {
    "published": "petals_throughput_v5.json",
    "published-large": "petals_throughput_v5_large.json",
}
#: Bound on rates given in T/G/M units (TFLOP/s, GB/s, Mbit/s, requests/s) before scaling.
MAX_RATE = 1e12
_MAX_MS = MAX_DURATION_S * 1e3


def resolve_path(ref: str, base_dir: str | None) -> Path:
    """``ref`` relative to the scenario file's folder (``base_dir``) unless absolute."""
    p = Path(ref)
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def _rate(d: Mapping, key: str, path: str, scale: float, **kw) -> float:
    return v.scaled(v.number(d, key, path, minimum=0, exclusive_minimum=True, maximum=MAX_RATE, **kw), scale,
                    v.join(path, key))


def memory_bytes(d: Mapping, key: str, path: str, exclusive_minimum: bool = True) -> int:
    """``d[key]`` GB as bytes (10^9), bounded by ``MAX_MEMORY_GB``.  Raises :class:`ScenarioError`."""
    gb = v.number(d, key, path, minimum=0, exclusive_minimum=exclusive_minimum, maximum=MAX_MEMORY_GB)
    return v.scaled(gb, GB, v.join(path, key), integer=True)


def parse_catalog(raw: Mapping, base_dir: str | None) -> Catalog:
    """The built-in catalog extended with the scenario's ``models``, ``gpus`` and ``devices``.

    Raises:
        ScenarioError: naming the field (``models.NAME.d_model``, ``gpus.NAME.calibration.MODEL``)."""
    base = default_catalog()
    models, gpus, devices, cals = {}, {}, {}, {}
    for name, spec in v.mapping(raw.get("models"), "models").items():
        path = v.join("models", name)
        d = v.mapping(spec, path)
        v.check_keys(d, path, ("num_blocks", "d_model", "num_heads", "num_kv_heads", "params_per_block",
                               "quantization", "max_sequence_tokens", "source"))
        heads = v.integer(d, "num_heads", path, minimum=1, maximum=MAX_HEADS)
        kv = v.integer(d, "num_kv_heads", path, default=heads, minimum=1, maximum=MAX_HEADS)
        if heads % kv:
            raise ScenarioError(v.join(path, "num_kv_heads"), f"must divide num_heads ({heads}), got {kv}")
        d_model = v.integer(d, "d_model", path, minimum=1, maximum=MAX_D_MODEL)
        if d_model % (heads // kv):
            raise ScenarioError(v.join(path, "d_model"), f"must be divisible by the KV group size {heads // kv}")
        quant = v.string(d, "quantization", path, default="nf4", choices=QUANTIZATION_BYTES)
        models[name] = ModelSpec(
            name=name, num_blocks=v.integer(d, "num_blocks", path, minimum=1, maximum=MAX_NUM_BLOCKS), d_model=d_model,
            num_heads=heads, num_kv_heads=kv,
            params_per_block=v.integer(d, "params_per_block", path, minimum=1, maximum=MAX_PARAMS_PER_BLOCK),
            bytes_per_param=QUANTIZATION_BYTES[quant],
            max_sequence_tokens=v.integer(d, "max_sequence_tokens", path, default=2048, minimum=2, maximum=MAX_TOKENS),
            source=v.string(d, "source", path, default="scenario-defined"),
        )
    for name, spec in v.mapping(raw.get("devices"), "devices").items():
        path = v.join("devices", name)
        d = v.mapping(spec, path)
        v.check_keys(d, path, ("peak_tflops", "efficiency", "memory_gb", "uplink_mbps", "downlink_mbps",
                               "memory_bandwidth_gbps", "source"))
        devices[name] = DeviceSpec(
            name=name, peak_flops=_rate(d, "peak_tflops", path, 1e12),
            efficiency=v.number(d, "efficiency", path, default=0.3, minimum=0, exclusive_minimum=True, maximum=1),
            memory_bytes=memory_bytes(d, "memory_gb", path, exclusive_minimum=False),
            uplink_bits_per_s=_rate(d, "uplink_mbps", path, 1e6),
            downlink_bits_per_s=_rate(d, "downlink_mbps", path, 1e6),
            memory_bandwidth_bytes_per_s=_rate(d, "memory_bandwidth_gbps", path, 1e9)
            if d.get("memory_bandwidth_gbps") is not None else None,
            source=v.string(d, "source", path, default="scenario-defined"),
        )
    all_models = {**base.models, **models}
    for name, spec in v.mapping(raw.get("gpus"), "gpus").items():
        path = v.join("gpus", name)
        d = v.mapping(spec, path)
        v.check_keys(d, path, ("memory_gb", "memory_bandwidth_gbps", "bf16_tflops", "max_blocks", "source",
                               "calibration"))
        inherited = base.gpus.get(name)
        if inherited is None:
            for k in ("memory_gb", "memory_bandwidth_gbps", "bf16_tflops"):
                if k not in d:
                    raise ScenarioError(v.join(path, k), "required for a GPU that is not in the built-in catalog")
        gpus[name] = GpuSpec(
            name=name,
            memory_bytes=memory_bytes(d, "memory_gb", path) if "memory_gb" in d else inherited.memory_bytes,
            memory_bandwidth_bytes_per_s=_rate(d, "memory_bandwidth_gbps", path, 1e9)
            if "memory_bandwidth_gbps" in d else inherited.memory_bandwidth_bytes_per_s,
            dense_bf16_flops=_rate(d, "bf16_tflops", path, 1e12) if "bf16_tflops" in d else inherited.dense_bf16_flops,
            max_blocks=v.integer(d, "max_blocks", path, minimum=1, maximum=MAX_BLOCKS_PER_GPU) if "max_blocks" in d
            else (inherited.max_blocks if inherited else None),
            source=v.string(d, "source", path, default=inherited.source if inherited else "scenario-defined"),
        )
        for mname, cspec in v.mapping(d.get("calibration"), v.join(path, "calibration")).items():
            cpath = v.join(v.join(path, "calibration"), mname)
            if mname not in all_models:
                raise ScenarioError(cpath, f"unknown model {v.short(mname)}; expected one of {sorted(all_models)}")
            cals[(mname, name)] = parse_calibration(v.mapping(cspec, cpath), cpath, all_models[mname], name, base_dir)
    return base.extended(models=models, gpus=gpus, devices=devices, calibrations=cals)


def parse_calibration(d: dict, path: str, model: ModelSpec, gpu: str, base_dir: str | None) -> Calibration:
    """One ``gpus.GPU.calibration.MODEL`` entry: measured times, or a PETALS throughput file entry.

    Raises:
        ScenarioError: naming the field under ``path``."""
    if "petals_json" in d:
        v.check_keys(d, path, ("petals_json", "entry"))
        ref = v.string(d, "petals_json", path)
        if ref in SHIPPED_PETALS_JSON:
            file = resources.files("distllm_env").joinpath(f"data/calibration/{SHIPPED_PETALS_JSON[ref]}")
        else:
            file = resolve_path(ref, base_dir)
        return calibration_from_petals_json(file, v.string(d, "entry", path), model, gpu, path)
    v.check_keys(d, path, ("tau_decode_ms", "prefill_ms", "inference_rps", "forward_rps", "network_rps", "source"),
                 required=("tau_decode_ms", "prefill_ms"))
    tau = v.scaled(v.number(d, "tau_decode_ms", path, minimum=0, exclusive_minimum=True, maximum=_MAX_MS), 1e-3,
                   v.join(path, "tau_decode_ms"))
    if tau < 1e-12:
        raise ScenarioError(v.join(path, "tau_decode_ms"), f"expected at least 1e-9 ms, got {tau * 1e3:g}")
    ppath = v.join(path, "prefill_ms")
    pre = v.mapping(d["prefill_ms"], ppath)
    v.check_keys(pre, ppath, ("slope", "intercept"), required=("slope", "intercept"))
    slope = v.number(pre, "slope", ppath, minimum=0, maximum=_MAX_MS) * 1e-3
    intercept = v.number(pre, "intercept", ppath, minimum=0, maximum=_MAX_MS) * 1e-3
    return Calibration(
        model=model.name, gpu=gpu, tau_decode_s=tau, prefill_slope_s_per_token=slope, prefill_intercept_s=intercept,
        inference_rps=v.number(d, "inference_rps", path, default=1.0 / tau, minimum=0, exclusive_minimum=True,
                               maximum=MAX_RATE),
        forward_rps=v.number(d, "forward_rps", path, default=1024.0 / (slope * 1024 + intercept)
                             if slope * 1024 + intercept > 0 else 1.0 / tau, minimum=0, exclusive_minimum=True,
                             maximum=MAX_RATE),
        network_rps=v.number(d, "network_rps", path, default=3020.3700586885343 * 14336 / model.d_model,
                             minimum=0, exclusive_minimum=True, maximum=MAX_RATE),
        derived=False, source=v.string(d, "source", path, default="scenario-defined"),
    )


__all__ = ["MAX_RATE", "QUANTIZATION_BYTES", "SHIPPED_PETALS_JSON", "memory_bytes", "parse_calibration",
           "parse_catalog", "resolve_path"]

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

The record types and unit constants live in :mod:`distllm_env.catalog_specs` and the built-in
entries in :mod:`distllm_env.catalog_data`; every name is re-exported here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from .catalog_data import _ANCHOR, _BUILTIN_CALIBRATIONS, _BUILTIN_DEVICES, _BUILTIN_GPUS, _BUILTIN_MODELS
from .catalog_specs import (GB, GIB, KV_BYTES_PER_VALUE, NETWORK_BITS_PER_HIDDEN_VALUE, NF4_BYTES_PER_PARAM,
                            WEIGHT_OVERHEAD, Calibration, DeviceSpec, GpuSpec, ModelSpec)
from .errors import ScenarioError


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
        """The catalog's model ``name``; ``path`` names the field in errors.

        Raises:
            ScenarioError: unknown model (the message lists the known ones)."""
        if name not in self.models:
            raise ScenarioError(path, f"unknown model {_short(name)}; expected one of {sorted(self.models)}")
        return self.models[name]

    def gpu(self, name: str, path: str = "gpu") -> GpuSpec:
        """The catalog's GPU ``name``; ``path`` names the field in errors.

        Raises:
            ScenarioError: unknown GPU (the message lists the known ones)."""
        if name not in self.gpus:
            raise ScenarioError(path, f"unknown GPU {_short(name)}; expected one of {sorted(self.gpus)}")
        return self.gpus[name]

    def device(self, name: str, path: str = "device") -> DeviceSpec:
        """The catalog's client device ``name``; ``path`` names the field in errors.

        Raises:
            ScenarioError: unknown device (the message lists the known ones)."""
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

    Raises:
        ScenarioError: the anchor (model, GPU) pair has no published calibration, or a GPU spec value
            the derivation divides by is not > 0 (path ``gpus.<name>.<field>``).
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

    Raises:
        ScenarioError: (path ``field_path``) the file cannot be read, is not UTF-8 or not JSON, does not
            hold a JSON object, lacks ``entry``, or the entry's rates are missing, non-numeric, too
            large, or not positive and finite.
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
    "KV_BYTES_PER_VALUE", "NETWORK_BITS_PER_HIDDEN_VALUE",
]

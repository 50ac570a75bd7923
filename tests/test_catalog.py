"""Catalog constants, the derivation rule and the PETALS throughput import (docs/contracts.md §2)."""

import json

import pytest

from distllm_env.catalog import calibration_from_petals_json, default_catalog, derive_calibration
from distllm_env.errors import ScenarioError


def test_bloom_block_and_kv_bytes():
    bloom = default_catalog().model("BLOOM-176B")
    # s_m = 2,466,437,120 × 4.25/8 × 1.01 (docs/model.md §2: ≈ 1.323 GB)
    assert bloom.block_bytes == round(2_466_437_120 * 4.25 / 8 * 1.01)
    assert abs(bloom.block_bytes / 1e9 - 1.3234) < 1e-3
    # s_c = 2 · 14336 · (20 + 128) · 2 bytes = 8,486,912 (docs/model.md §2: 8.487 MB)
    assert bloom.kv_bytes_per_block(20, 128) == 8_486_912
    assert bloom.kv_group_size == 1


def test_llama_block_parameters_follow_the_config_shapes():
    cat = default_catalog()
    for name, (d, heads, kv, ffn) in {"Llama-2-70B": (8192, 64, 8, 28672),
                                      "Llama-3.1-405B": (16384, 128, 8, 53248)}.items():
        m = cat.model(name)
        head_dim = d // heads
        expected = 2 * d * d + 2 * d * kv * head_dim + 3 * d * ffn + 2 * d
        assert m.params_per_block == expected
        assert m.kv_group_size == heads // kv
        # GQA: KV bytes per token per block = 2 · (d / groups) · 2
        assert m.kv_bytes_per_block(1, 0) == 2 * (d // (heads // kv)) * 2


def test_measured_pairs_are_exact_and_not_derived():
    cat = default_catalog()
    a100 = cat.calibration("BLOOM-176B", "A100-80GB")
    mig = cat.calibration("BLOOM-176B", "MIG-1g.10gb")
    assert (a100.tau_decode_s, mig.tau_decode_s) == (3.2197e-3, 16.2488e-3)
    assert a100.tau_prefill_s(20) == pytest.approx(0.0743e-3 * 20 + 32.99e-3)
    assert mig.tau_prefill_s(20) == pytest.approx(0.1041e-3 * 20 + 206.3547e-3)
    assert not a100.derived and not mig.derived


def test_every_other_pair_is_derived_by_the_bandwidth_and_flops_rule():
    cat = default_catalog()
    anchor = cat.calibration("BLOOM-176B", "A100-80GB")
    bloom, a100 = cat.model("BLOOM-176B"), cat.gpu("A100-80GB")
    for model in cat.models.values():
        for gpu in cat.gpus.values():
            cal = cat.calibration(model.name, gpu.name)
            if (model.name, gpu.name) in cat.calibrations:
                continue
            assert cal.derived
            expect_tau = (anchor.tau_decode_s * model.block_bytes / bloom.block_bytes
                          * a100.memory_bandwidth_bytes_per_s / gpu.memory_bandwidth_bytes_per_s)
            assert cal.tau_decode_s == pytest.approx(expect_tau)
            scale = model.params_per_block / bloom.params_per_block * a100.dense_bf16_flops / gpu.dense_bf16_flops
            assert cal.prefill_intercept_s == pytest.approx(anchor.prefill_intercept_s * scale)
            assert cal.inference_rps == pytest.approx(1 / cal.tau_decode_s)
    # an H100 decodes Llama-2-70B faster than an A100 decodes BLOOM (smaller blocks, more bandwidth)
    assert cat.calibration("Llama-2-70B", "H100-80GB").tau_decode_s < anchor.tau_decode_s


def test_petals_throughput_json_import(tmp_path):
    path = tmp_path / "throughput_v5.json"
    path.write_text(json.dumps({"k": {"inference_rps": 400.0, "forward_rps": 2000.0, "network_rps": 100.0}}))
    bloom = default_catalog().model("BLOOM-176B")
    cal = calibration_from_petals_json(path, "k", bloom, "A100-80GB")
    assert cal.tau_decode_s == pytest.approx(1 / 400)
    assert cal.tau_prefill_s(100) == pytest.approx(100 / 2000)
    with pytest.raises(ScenarioError, match="entry 'missing'"):
        calibration_from_petals_json(path, "missing", bloom, "A100-80GB")
    path.write_text(json.dumps({"k": {"inference_rps": -1, "forward_rps": 2000.0, "network_rps": 100.0}}))
    with pytest.raises(ScenarioError, match="inference_rps"):
        calibration_from_petals_json(path, "k", bloom, "A100-80GB")


def test_unknown_names_are_scenario_errors():
    cat = default_catalog()
    with pytest.raises(ScenarioError, match="unknown GPU 'B200'"):
        cat.gpu("B200", "servers.0.gpu")
    with pytest.raises(ScenarioError, match="unknown model"):
        cat.calibration("GPT-5", "A100-80GB")


def test_derivation_needs_the_anchor():
    cat = default_catalog()
    bare = type(cat)(cat.models, cat.gpus, cat.devices, {})
    with pytest.raises(ScenarioError, match="anchor"):
        derive_calibration(cat.model("Llama-2-70B"), cat.gpu("L4"), bare)

"""Split inference cost model, layer models, profiles, the ``split:`` scenario section and the setting."""

from __future__ import annotations

import numpy as np
import pytest

from distllm_env import load_scenario
from distllm_env.catalog import default_catalog
from distllm_env.errors import ScenarioError
from distllm_env.rng import stream
from distllm_env.split import cost
from distllm_env.split.models import LAYER_MODELS, get_layer_model, layer_model_from_spec
from distllm_env.split.profile import NetworkLink, SplitServer, layer_profile
from distllm_env.split.setting import SplitSetting


# -- formulas ---------------------------------------------------------------------------------------------
def test_block_flop_formulas_by_hand():
    # 24·n·d² + 4·n²·d with n = 10, d = 4: 3840 + 1600
    assert cost.block_prefill_flops(10, 4) == 5440
    # 24·d² + 4·t·d with t = 12, d = 4: 384 + 192
    assert cost.block_decode_flops(12, 4) == 576
    # three decode steps after a 10-token prompt attend over 11, 12, 13 tokens
    assert cost.block_decode_total_flops(10, 3, 4) == 1728
    assert cost.block_decode_total_flops(10, 3, 4) == sum(cost.block_decode_flops(t, 4) for t in (11, 12, 13))
    assert cost.block_decode_total_flops(10, 0, 4) == 0
    # a given dense part replaces 24·d²
    assert cost.block_prefill_flops(10, 4, dense_flops_per_token=100) == 1000 + 1600
    assert cost.activation_bytes(100, 768) == 153_600
    # 1000 bytes over 8 kbit/s = 1 s, plus 2 messages × RTT/2
    assert cost.transfer_time_s(1000, 2, 8000.0, 0.1) == pytest.approx(1.1)


def test_gpt2_small_layer_costs_by_hand():
    m = LAYER_MODELS["gpt2-small"]
    lc = m.layer_costs(100, 1)
    assert lc.layer_names == ("embed",) + tuple(f"block{i}" for i in range(12)) + ("head",)
    block = 24 * 100 * 768 ** 2 + 4 * 100 ** 2 * 768          # 1,446,297,600
    assert lc.prefill_flops[1] == block == 1_446_297_600
    assert lc.prefill_flops[0] == 4 * 768 * 100               # embedding
    assert lc.prefill_flops[-1] == 2 * 768 * 50257            # LM head on the last position
    assert np.all(lc.decode_flops == 0) and lc.decode_steps == 0
    expected_bytes = [400] + [153_600] * 12 + [1536, 4]       # ids, hidden states, last position, token id
    assert lc.boundary_prefill_bytes.tolist() == expected_bytes
    assert np.all(lc.boundary_step_bytes == 0)
    lc5 = m.layer_costs(100, 5)                               # 4 decode steps
    assert lc5.decode_flops[1] == 4 * 24 * 768 ** 2 + 4 * 768 * (4 * 100 + 10)
    assert lc5.decode_flops[-1] == 4 * 2 * 768 * 50257
    assert lc5.boundary_step_bytes.tolist() == [4] + [1536] * 13 + [4]


def test_encoder_and_vit_layer_costs_by_hand():
    bert = LAYER_MODELS["bert-base"]
    lc = bert.layer_costs(128)
    assert lc.prefill_flops[-1] == 2 * 768 * 2 + 2 * 768 ** 2   # classifier + pooler
    assert lc.boundary_prefill_bytes[-1] == 2 * 2               # two fp16 logits
    vit = LAYER_MODELS["vit-b-16"]
    lv = vit.layer_costs(197)
    assert lv.boundary_prefill_bytes[0] == 224 * 224 * 3        # the raw uint8 image
    assert lv.prefill_flops[0] == 2 * 16 * 16 * 3 * 768 * 196 + 4 * 768 * 197
    assert lv.num_layers == 14


def test_catalog_block_model_uses_its_parameters():
    spec = default_catalog().model("Llama-2-70B")
    lm = layer_model_from_spec(spec)
    lc = lm.layer_costs(20, 3)
    assert lc.num_layers == 80 and lm.embed is None and lm.head is None
    assert lc.prefill_flops[0] == 2 * 855_654_400 * 20 + 4 * 20 ** 2 * 8192
    assert lc.boundary_prefill_bytes[0] == 20 * 8192 * 2 and lc.boundary_prefill_bytes[-1] == 8192 * 2
    assert get_layer_model("BLOOM-176B").dense_flops_per_token == 2 * 2_466_437_120
    # BLOOM's block is a standard one: 2 × params ≈ 24·d² (+ biases)
    assert get_layer_model("BLOOM-176B").block_dense_flops_per_token == pytest.approx(24 * 14336 ** 2, rel=1e-3)


@pytest.mark.parametrize("model, prompt, output, field", [
    ("bert-base", 128, 2, "output_tokens"),      # not generative
    ("bert-base", 600, 1, "prompt_tokens"),      # > 512 positions
    ("gpt2-small", 1000, 30, "prompt_tokens"),   # 1000 + 29 > 1024
    ("vit-b-16", 1, 1, "prompt_tokens"),         # needs a patch and [CLS]
    ("gpt2-small", 0, 1, "prompt_tokens"),
])
def test_bad_lengths_raise_naming_the_field(model, prompt, output, field):
    with pytest.raises(ScenarioError, match=field):
        LAYER_MODELS[model].layer_costs(prompt, output)


def test_unknown_layer_model_lists_the_names():
    with pytest.raises(ScenarioError, match="gpt2-small"):
        get_layer_model("gpt5")


# -- profiles -----------------------------------------------------------------------------------------------
def test_layer_profile_by_hand():
    net = NetworkLink(uplink_bits_per_s=8e6, downlink_bits_per_s=16e6, rtt_s=0.02)
    p = layer_profile(LAYER_MODELS["gpt2-small"], 1e12, SplitServer("s", 1e13), 100, net, output_tokens=1)
    block = 1_446_297_600
    assert p.client_time_s[1] == pytest.approx(block / 1e12)
    assert p.server_time_s[1] == pytest.approx(block / 1e13)
    assert p.server_work_flops[1] == block
    assert p.up_s[0] == pytest.approx(400 * 8 / 8e6 + 0.01)          # token ids up + RTT/2
    assert p.down_s[14] == pytest.approx(4 * 8 / 16e6 + 0.01)        # token id down + RTT/2
    assert p.up_s[5] == pytest.approx(153_600 * 8 / 8e6 + 0.01)
    # server-only: upload ids, 14 layers on the server, download the token
    so = np.zeros(14, np.int8)
    assert p.latency_s(so) == pytest.approx(p.up_s[0] + p.server_time_s.sum() + p.down_s[14])
    # all-client: no transfer at all
    assert p.latency_s(np.ones(14, np.int8)) == pytest.approx(p.client_time_s.sum())
    # decode steps: every boundary message repeats g times, every message pays RTT/2
    p5 = layer_profile(LAYER_MODELS["gpt2-small"], 1e12, 1e13, 100, net, output_tokens=5)
    assert p5.up_s[5] == pytest.approx((153_600 + 4 * 1536) * 8 / 8e6 + 5 * 0.01)


def test_profile_client_layer_limit_and_device_spec():
    dev = default_catalog().device("phone-soc")
    net = NetworkLink.from_device(dev, 0.05)
    p = layer_profile(LAYER_MODELS["bert-base"], dev, SplitServer("s", 1e14), 64, net, client_layers=3)
    assert np.all(np.isfinite(p.client_time_s[:3])) and np.all(np.isinf(p.client_time_s[3:]))
    assert p.client_time_s[1] == pytest.approx(p.server_work_flops[1] / (2.15e12 * 0.3))
    assert p.up_s[1] == pytest.approx(64 * 768 * 2 * 8 / 21.08e6 + 0.025)
    with pytest.raises(ScenarioError, match="uplink"):
        NetworkLink(0.0, 1e6, 0.01)
    with pytest.raises(ScenarioError, match="device"):
        layer_profile(LAYER_MODELS["bert-base"], -1.0, 1e14, 64, net)


# -- the split: section -------------------------------------------------------------------------------------
def test_shipped_split_scenarios_parse():
    for name, rtt in (("splitllm-edge", 0.028), ("splitllm-wan", 0.100)):
        sc = load_scenario(name)
        sp = sc.split
        assert sp is not None and sp.sla_rule == "server_only_factor" and sp.sla_factor == 1.5
        assert sp.budget_steps == 1000 and sp.num_requests == 2000 and sp.arrival_factor == 1.1
        assert {r.model for r in sp.requests} >= {"transformer-base", "bert-base", "gpt2-xl", "vit-l-16"}
        st = SplitSetting.from_scenario(sc)
        assert [c.device.name for c in st.clients] == ["phone-soc", "laptop-gpu", "jetson-orin", "desktop-gpu"]
        assert all(c.network.rtt_s == pytest.approx(rtt) for c in st.clients)
        assert st.server.effective_flops == pytest.approx(312e12 * 0.3)


def test_split_overrides_apply():
    st = SplitSetting.from_scenario("splitllm-edge", overrides=[
        "split.network.rtt_ms=10", "split.network.uplink_mbps=5", "split.server.effective_tflops=50"])
    assert all(c.network.rtt_s == pytest.approx(0.010) and c.network.uplink_bits_per_s == 5e6 for c in st.clients)
    assert st.server.effective_flops == 50e12


@pytest.mark.parametrize("override, path", [
    ("split.bogus=1", "split.bogus"),
    ("split.requests.0.model=gpt5", "split.requests.0.model"),
    ("split.requests.1.output_tokens=3", "split.requests.1.output_tokens"),
    ("split.server.index=5", "split.server.index"),
    ("split.sla.rule=tight", "split.sla.rule"),
    ("split.sla={rule: fixed}", "split.sla.ms"),
    ("split.budget_steps=0", "split.budget_steps"),
    ("split.server.efficiency=1.5", "split.server.efficiency"),
    ("split.requests=[]", "split.requests"),
    ("split.arrival_grid.factor=1.0", "split.arrival_grid.factor"),
])
def test_bad_split_section_raises_with_path(override, path):
    with pytest.raises(ScenarioError) as err:
        load_scenario("splitllm-edge", [override])
    assert err.value.path == path


def test_scenarios_without_split_section_are_unchanged():
    assert load_scenario("tiny").split is None
    with pytest.raises(ScenarioError, match="split"):
        SplitSetting.from_scenario("tiny")


def test_clients_without_device_are_left_out():
    st = SplitSetting.from_scenario("splitllm-edge", overrides=["clients.0.device=null"])
    assert [c.index for c in st.clients] == [1, 2, 3]


def test_sample_requests_is_seeded_and_follows_the_mix():
    st = SplitSetting.from_scenario("splitllm-edge")
    a = st.sample_requests(stream(3, "workload"), 4000)
    b = st.sample_requests(stream(3, "workload"), 4000)
    assert a == b
    fam = np.array([st.models[r.model].family for r in a])
    for f in ("transformer", "bert", "gpt2", "vit"):   # one quarter each by the shipped weights
        assert abs(np.mean(fam == f) - 0.25) < 0.03
    assert all(r.output_tokens == 1 for r in a if st.models[r.model].family in ("bert", "vit", "transformer"))
    assert max(r.output_tokens for r in a) == 32 and min(r.prompt_tokens for r in a) >= 16
    r = a[0]
    p = st.profile(r)
    assert st.sla_s(r, p) == pytest.approx(1.5 * p.latency_s(np.zeros(p.num_layers, np.int8)))
    st_fixed = SplitSetting.from_scenario("splitllm-edge", overrides=["split.sla={rule: fixed, ms: 250}"])
    assert st_fixed.sla_s(r) == pytest.approx(0.25)

"""distllm_env.testing.assert_beats: passes when it must, fails with the per-seed table otherwise."""

import pytest

from distllm_env.testing import assert_beats

SC = "paper-clustered"
# few, sparse requests: no waiting, so the chain of least static decode cost (shortest) is faster per
# token than a random feasible chain, by construction
OV = ["workload.num_requests=10", "workload.arrival_rate_per_s=0.05"]
SEEDS = [10_000, 10_001]


def test_assert_beats_passes_for_a_clear_winner():
    out = assert_beats("even+shortest", "even+random", SC, seeds=SEEDS, margin=0.05, overrides=OV)
    assert out["policy_mean_s"] <= 0.95 * out["baseline_mean_s"]
    assert out["seeds"] == SEEDS


def test_assert_beats_fails_and_shows_the_per_seed_table():
    with pytest.raises(AssertionError) as info:
        assert_beats("even+random", "even+shortest", SC, seeds=SEEDS, margin=0.0, overrides=OV)
    text = str(info.value)
    assert "does not beat" in text and "10000" in text and "10001" in text and "mean" in text


def test_the_margin_is_enforced():
    with pytest.raises(AssertionError, match="by 50%"):
        assert_beats("even+shortest", "even+random", SC, seeds=SEEDS, margin=0.5, overrides=OV)
    with pytest.raises(ValueError, match="margin"):
        assert_beats("even+shortest", "even+random", SC, seeds=SEEDS, margin=1.5)

"""The event-driven simulator: hand-computed times, reservation semantics, invariants, determinism."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from distllm_env import simulate
from distllm_env.errors import DistLLMError, PlacementError, RouteError
from distllm_env.instance import build_instance
from distllm_env.metrics import memory_profile
from distllm_env.placement import CachePolicy, Placement, PlacementResult
from distllm_env.reservations import CalendarBook, PublishedBook, backoff_round_s
from distllm_env.scenario import load_scenario
from distllm_env.simulator import Simulation
from distllm_env.workload import Request
from tests.conftest import preset_dict

TWO_HOP = Placement((0, 0, 4, 0), (4, 0, 4, 0), 8)     # s0: blocks 0-3, s2: blocks 4-7


def test_two_server_chain_with_prefill_hand_computed():
    """tiny: client c0n0, s0 at c1n0 and s2 at c2n0, both 40 ms RTT away.
    t_cj = 40 + 10 = 50 ms; t^I_cj(20) = 40 + 0.1·20 + 10 = 52 ms; τ = 2 ms; τ^I(20) = 0.01·20 + 5 = 5.2 ms.
    prefill: 2 × (52 + 4·5.2) = 145.6 ms; decode: 31 × 2 × (50 + 4·2) = 3596 ms; initial delay 20 ms."""
    res = simulate("tiny", TWO_HOP, "shortest", seed=0)
    r0 = res.records[0]
    assert r0.arrival_s == 0.0 and r0.start_s == 0.0
    assert r0.route.to_text() == "s0:0-3|s2:4-7"
    assert r0.first_token_s == pytest.approx(0.020 + 0.1456)
    assert r0.completion_s == pytest.approx(0.020 + 0.1456 + 3.596)
    assert r0.wait_s == 0.0
    # every completed request has the same service time (fixed lengths, same chain)
    for r in res.records:
        if r.wait_s == 0:
            assert r.completion_s - r.arrival_s == pytest.approx(3.7616)
    # mean per-token time = Σ(completion − arrival)/Σ tokens
    done = [r for r in res.records if r.completed]
    expect = sum(r.completion_s - r.arrival_s for r in done) / sum(r.output_tokens for r in done)
    assert res.summary["mean_per_token_time_s"] == pytest.approx(expect)


def test_allocation_delay_is_held_like_service_time():
    res = simulate("tiny", TWO_HOP, "shortest", seed=0, allocation_delays={"default": 5.0})
    r0 = res.records[0]
    assert r0.first_token_s == pytest.approx(5.0 + 0.020 + 0.1456)
    assert r0.completion_s == pytest.approx(5.0 + 3.7616)
    assert res.meta["allocation_delay_applied_s"] == 5.0 and "allocation_delay_note" in res.meta


def test_backoff_instants():
    assert backoff_round_s(0.0) == 0.0
    assert [backoff_round_s(x) for x in (0.2, 1.0, 1.5, 3.0, 6.9, 7.1, 40, 63.5, 124)] == [
        1, 1, 3, 3, 7, 15, 63, 123, 183]


def test_calendar_lets_a_later_request_fit_around_a_waiting_one():
    book = CalendarBook([10])
    book.commit(0.0, 0.0, 10.0, [(0, 6)])          # 6 of 10 bytes busy until t = 10
    # a request needing 8 bytes for 5 s must wait until 10
    assert book.earliest_start(1.0, [(0, 8)], 5.0) == 10.0
    book.commit(1.0, 10.0, 15.0, [(0, 8)])
    # a later request needing 4 bytes for 3 s fits now, before the waiting one starts
    assert book.earliest_start(2.0, [(0, 4)], 3.0) == 2.0
    # ... but not if it would overlap the waiting one's interval: 4 + 8 > 10
    assert book.earliest_start(2.0, [(0, 4)], 9.0) == 15.0
    assert book.earliest_start(2.0, [(0, 11)], 1.0) is None          # never fits


def test_published_wait_is_read_from_sorted_completions():
    book = PublishedBook([10])
    book.commit(0.0, 0.0, 20.0, [(0, 4)])
    book.commit(0.0, 0.0, 12.0, [(0, 4)])
    # free 2 now; needs 6 → after the first completion (t = 12) 6 are free
    assert book.earliest_start(1.0, [(0, 6)], 1.0) == 12.0
    # needs 9 → both must finish: t = 20
    assert book.earliest_start(1.0, [(0, 9)], 1.0) == 20.0
    # a routed-but-waiting request counts from the decision: a later small one sees it
    book.commit(1.0, 12.0, 30.0, [(0, 6)])
    assert book.earliest_start(2.0, [(0, 2)], 1.0) == 20.0
    book.advance(25.0)
    assert book.free_bytes(0, 25.0) == 4


def _tiny_tight(mode: str, backoff: bool, seed: int = 0):
    """tiny with a one-server-per-hop placement and memory for only a few sessions."""
    sc = load_scenario("tiny", [f"simulator.reservation={mode}", f"simulator.backoff={str(backoff).lower()}",
                                "workload.arrival_rate_per_s=8", "workload.num_requests=60",
                                "gpus.toy-gpu.memory_gb=0.1040"])
    return simulate(sc, TWO_HOP, "shortest", seed=seed)


@pytest.mark.parametrize("mode", ["calendar", "published"])
@pytest.mark.parametrize("backoff", [False, True])
def test_waiting_happens_and_memory_is_never_overcommitted(mode, backoff):
    res = _tiny_tight(mode, backoff)
    assert res.summary["wait_max_s"] > 0
    _assert_invariants(res)
    if backoff:   # every positive wait is a cumulative back-off instant 1, 3, 7, …, 63, 123, 183, …
        instants = [1, 3, 7, 15, 31] + [63 + 60 * k for k in range(100)]
        for r in res.records:
            if r.completed and r.wait_s > 0:
                assert any(r.wait_s == pytest.approx(x) for x in instants), r.wait_s


def _assert_invariants(res):
    inst = res.instance
    pr = res.placement_result
    cap = pr.cache_policy.kv_capacity_bytes(inst.memory_bytes, inst.block_bytes, pr.placement.count_array,
                                            inst.kv_bytes_per_token_per_block)
    times, levels = memory_profile(res.records, inst.num_servers)
    for j in range(inst.num_servers):
        if len(levels[j]):
            assert levels[j].max() <= cap[j], f"server {j} over-committed"
            assert levels[j][-1] == 0
    for r in res.records:
        assert r.status in ("completed", "rejected")
        if r.completed:
            assert r.arrival_s <= r.start_s < r.first_token_s <= r.completion_s
            assert r.wait_s == pytest.approx(r.start_s - r.arrival_s)
            assert r.route is not None and sum(r.route.blocks) == inst.num_blocks - r.client_blocks
        else:
            assert r.reason in ("insufficient_memory", "no_feasible_chain") and math.isnan(r.completion_s)
    assert res.summary["num_completed"] + res.summary["num_rejected"] == len(res.records)


@st.composite
def random_scenarios(draw):
    d = preset_dict("tiny")
    L = draw(st.integers(2, 8))
    d["models"]["toy-8L"]["num_blocks"] = L
    n_servers = draw(st.integers(1, 5))
    d["topology"]["clusters"]["sizes"] = [1, 3, 3]
    nodes = ["c1n0", "c1n1", "c1n2", "c2n0", "c2n1", "c2n2"]
    d["servers"] = [{"gpu": "toy-gpu", "node": draw(st.sampled_from(nodes)),
                     "memory_gb": draw(st.floats(0.03, 0.3))} for _ in range(n_servers)]
    d["clients"] = [{"node": "c0n0"}, {"node": "c1n0"}][: draw(st.integers(1, 2))]
    d["workload"] = {"arrival": "poisson", "arrival_rate_per_s": draw(st.floats(0.5, 20)),
                     "num_requests": draw(st.integers(1, 40)),
                     "prompt_tokens": {"dist": "uniform", "low": 1, "high": draw(st.integers(1, 400))},
                     "output_tokens": {"dist": "uniform", "low": 1, "high": draw(st.integers(1, 600))}}
    d["simulator"] = {"reservation": draw(st.sampled_from(["calendar", "published"])),
                      "backoff": draw(st.booleans()),
                      "allocation_delay_s": {"default": draw(st.sampled_from([0.0, 0.5]))}}
    counts = [draw(st.integers(0, min(L, 4))) for _ in range(n_servers)]
    starts = [draw(st.integers(0, L - c)) for c in counts]
    cache = draw(st.sampled_from(["leftover", "fixed_pool(300)"]))
    return d, Placement(tuple(starts), tuple(counts), L), cache, draw(st.sampled_from(["shortest", "random", "round-robin"])), draw(st.integers(0, 1000))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_scenarios())
def test_property_memory_invariant_and_every_request_accounted_for(case):
    d, placement, cache, router, seed = case
    sc = load_scenario(d)
    inst = build_instance(sc, seed)
    from distllm_env.placement import check_memory

    try:
        placement.check_covered()
        check_memory(placement, inst.memory_bytes, inst.block_bytes, inst.max_blocks)
    except PlacementError:
        with pytest.raises(PlacementError):
            simulate(sc, PlacementResult(placement, CachePolicy.parse(cache)), router, seed=seed)
        return
    res = simulate(sc, PlacementResult(placement, CachePolicy.parse(cache)), router, seed=seed)
    assert len(res.records) == sc.workload.num_requests
    assert [r.request_id for r in res.records] == list(range(len(res.records)))
    _assert_invariants(res)


def test_a_request_that_can_never_fit_is_rejected_not_looped_on():
    # 1 token of KV per block ≈ 4 kB; a fixed pool of 10 tokens cannot hold a 52-token session
    res = simulate("tiny", PlacementResult(TWO_HOP, CachePolicy.parse("fixed_pool(10)")), "shortest", seed=0)
    assert res.summary["num_rejected"] == 30
    assert {r.reason for r in res.records} == {"insufficient_memory"}
    assert res.summary["rejected_reasons"] == {"insufficient_memory": 30}


def test_uncovered_placement_raises_placement_error_naming_blocks():
    with pytest.raises(PlacementError, match="blocks 4-7 uncovered"):
        simulate("tiny", Placement((0, 0, 0, 0), (4, 0, 0, 0), 8), "shortest")
    with pytest.raises(PlacementError, match="capped|weights"):
        simulate("tiny", Placement((0, 0, 0, 0), (8, 0, 0, 0), 8), "shortest")


def test_same_seed_same_table_different_seed_different(tmp_path):
    a = simulate("paper-abovenet", "even", "shortest", seed=3)
    b = simulate("paper-abovenet", "even", "shortest", seed=3)
    c = simulate("paper-abovenet", "even", "shortest", seed=4)
    pa, pb, pc = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    a.write(pa), b.write(pb), c.write(pc)
    assert pa.read_bytes() == pb.read_bytes()
    assert pa.read_bytes() != pc.read_bytes()
    ja, jb = tmp_path / "a.json", tmp_path / "b.json"
    a.write(ja), b.write(jb)
    assert ja.read_bytes() == jb.read_bytes()


def test_common_random_numbers_across_policies():
    a = simulate("paper-gtsce", "even", "shortest", seed=5)
    b = simulate("paper-gtsce", "even", "random", seed=5)
    assert [s.node for s in a.instance.servers] == [s.node for s in b.instance.servers]
    assert [(r.arrival_s, r.prompt_tokens) for r in a.records] == [(r.arrival_s, r.prompt_tokens) for r in b.records]


def test_stepping_api_checks_its_protocol():
    sc = load_scenario("tiny")
    inst = build_instance(sc, 0)
    reqs = [Request(0, 0, 0.0, 20, 32), Request(1, 0, 1.0, 20, 32)]
    sim = Simulation(inst, PlacementResult(TWO_HOP), reqs)
    req = sim.next_request()
    with pytest.raises(DistLLMError, match="neither committed nor rejected"):
        sim.next_request()
    with pytest.raises(RouteError):
        sim.commit(req, sim.view.route_from_chain([0, 2]).__class__(()))
    with pytest.raises(DistLLMError, match="not the request being routed"):
        sim.commit(reqs[1], sim.view.route_from_chain([0, 2]))
    rec = sim.commit(req, sim.view.route_from_chain([0, 2]))
    assert rec.completed and sim.next_request().id == 1

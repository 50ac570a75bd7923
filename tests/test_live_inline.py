"""The live engine's inline paths (``LiveSimulation._chain``, ``_start_at``: a step or iteration
served without the event queue when no other event can come first or interfere) give records
byte-identical to the pure event path, under ``serial`` and ``batched``, with random arrivals,
lengths, routes and back-off; and they do skip events.

The reference test (tests/test_live_reference.py) subclasses the engine to trace memory, which turns
the inline paths off, so this file compares the plain engine with the event path and the reference."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import distllm_env.live.engine as engine_module
from distllm_env.live.engine import LiveSimulation
from distllm_env.live.reference import reference_run
from distllm_env.placement import Placement
from distllm_env.workload import Request

from live_helpers import OVERLAPPING, instance_and_placement, random_requests, reference_sessions, run_live, tiny_spec

#: two-hop chains over 2 × 2 servers: sessions are often alone on their servers (the alone-session
#: inline path), and with 0.1045 GB per GPU (≈ 2.7 MB of KV) others queue for admission onto them
HALVES = Placement(starts=(0, 4, 0, 4), counts=(4, 4, 4, 4), num_blocks=8)

#: (server model, back-off, unknown lengths, seed, requests, arrival rate /s, iteration overhead s,
#:  layout: "overlapping" = OVERLAPPING at 0.08 GB with outputs 1..11, "halves" = HALVES at 0.1045 GB
#:  with outputs 1..59)
CASES = st.tuples(st.sampled_from(["serial", "batched"]), st.booleans(), st.booleans(),
                  st.integers(0, 2**31 - 1), st.integers(2, 25), st.floats(0.05, 40.0), st.sampled_from([0.0, 0.003]),
                  st.sampled_from(["overlapping", "halves"]))


class EventPath(LiveSimulation):
    """The engine with every step and iteration through the event queue (overriding ``_push`` turns
    the inline paths off)."""

    def _push(self, t, kind, a, b):
        super()._push(t, kind, a, b)


class _CountingHeapq:
    """``heapq`` as the engine module sees it, counting pops."""

    def __init__(self):
        import heapq
        self._h, self.pops = heapq, 0

    def heappush(self, heap, item):
        self._h.heappush(heap, item)

    def heappop(self, heap):
        self.pops += 1
        return self._h.heappop(heap)


def _long_requests(rng: np.random.Generator, n: int, rate: float, unknown: bool) -> list[Request]:
    """As :func:`live_helpers.random_requests` with true outputs of 1..59 tokens (long sessions)."""
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=n))
    out = []
    for i in range(n):
        prompt, true = int(rng.integers(1, 40)), int(rng.integers(1, 60))
        declared = true + int(rng.integers(0, 12)) if unknown else true
        out.append(Request(id=i, client=0, arrival_s=float(arrivals[i]), prompt_tokens=prompt, output_tokens=true,
                           declared_output_tokens=declared, output_tokens_known=not unknown))
    return out


def _run(cls, case):
    model, backoff, unknown, seed, n, rate, overhead_s, layout = case
    halves = layout == "halves"
    inst, presult = instance_and_placement(tiny_spec(memory_gb=0.1045 if halves else 0.08, server_model=model,
                                                     backoff=backoff), HALVES if halves else OVERLAPPING)
    rng = np.random.default_rng(seed)
    reqs = (_long_requests if halves else random_requests)(rng, n, rate, unknown)
    sim = cls(inst, presult, reqs, backoff=backoff, server_model=model, batched_step_overhead_s=overhead_s)
    routes = run_live(sim, rng)
    return inst, reqs, sim, sim.finished_records(), routes


@settings(max_examples=80, deadline=None)
@given(CASES)
def test_inline_paths_equal_event_path_and_reference(case):
    model, backoff, _, _, _, _, overhead_s, _ = case
    inst, reqs, sim, fast, routes = _run(LiveSimulation, case)
    assert sim._inline
    _, _, slow_sim, slow, _ = _run(EventPath, case)
    assert not slow_sim._inline
    assert [repr(r) for r in fast] == [repr(r) for r in slow]          # byte-identical records
    assert fast[-1] is not None and all(u == 0 for u in sim.used_bytes)
    # and both equal the token-level reference
    admitted = [r for r in reqs if fast[r.id].status == "completed"]
    ref = reference_sessions(inst, admitted, routes, inst.initial_delay_s)
    reference_run(ref, [int(c) for c in sim.capacity_bytes], model, backoff, [float(x) for x in inst.tau_decode_s],
                  [float(s.gpu.dense_bf16_flops) for s in inst.servers], inst.model.flops_per_token_per_block,
                  overhead_s)
    for s in ref:
        rec = fast[s.rid]
        for got, want in ((rec.start_s, s.start_s), (rec.first_token_s, s.first_token_s),
                          (rec.completion_s, s.completion_s)):
            assert math.isfinite(got) and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (s.rid, got, want)


def test_inline_paths_skip_events(monkeypatch):
    """On a lightly loaded case (sessions mostly alone on their servers) the inline paths pop far fewer
    events than the event path, for the same records."""
    for model in ("serial", "batched"):
        case = (model, True, True, 7, 12, 0.05, 0.0, "overlapping")
        counts, recs = [], []
        for cls in (LiveSimulation, EventPath):
            counter = _CountingHeapq()
            monkeypatch.setattr(engine_module, "heapq", counter)
            recs.append([repr(r) for r in _run(cls, case)[3]])
            counts.append(counter.pops)
            monkeypatch.undo()
        assert recs[0] == recs[1]
        assert counts[0] * 2 < counts[1], (model, counts)

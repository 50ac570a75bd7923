"""``simulate()``: one scenario, one seed, one placement + routing policy → per-request table and summary.

The environments, baselines, CLI and benchmarks all go through :class:`~distllm_env.simulator.Simulation`
and this function; nothing else computes service times or reservations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._version import __version__
from .errors import NoFeasibleChain
from .instance import Instance, build_instance
from .metrics import summarize
from .outputs import add_data_attribution, record_row, write_requests
from .placement import Placement, PlacementResult
from .allocation_delays import policy_family
from .registry import (check_scenario_policies, default_placement, default_routing, family_delay_s, make_placement,
                       resolve_placement, resolve_routing)
from .live.admission import admission_meta
from .live.engine import LiveSimulation
from .rng import check_seed, generators, seed_streams
from .scenario import Scenario, load_scenario
from .simulator import RequestRecord, Simulation, new_simulation
from .workload import Request, generate_requests

ALLOCATION_DELAY_NOTE = ("allocation delays are fitted constants of the published simulator, charged per "
                         "request by policy family (docs/contracts.md §4)")


@dataclass(eq=False)
class SimulationResult:
    """Result of :func:`simulate`.  ``timings`` holds wall-clock algorithm times (never written to
    the per-request files, which are deterministic)."""

    scenario: Scenario
    instance: Instance
    seed: int
    placement_result: PlacementResult
    placement_name: str
    routing_name: str
    family: str
    records: list[RequestRecord]
    summary: dict
    meta: dict
    timings: dict = field(default_factory=dict)
    #: server events applied during the run, ``(time_s, server, event)`` (churn; empty without)
    server_events: list = field(default_factory=list)

    def write(self, path: str | Path) -> Path:
        """Write the per-request table (CSV or JSON by extension)."""
        return write_requests(path, self.records, self.meta, self.summary)

    def rows(self, json_route: bool = False) -> list[dict]:
        return [record_row(r, json_route) for r in self.records]

    def plot(self, path: str | Path | None = None, marks: Sequence[tuple[float, int, str]] | None = None):
        """A matplotlib Figure of the run's dynamics over time (:mod:`distllm_env.timeline`): arrivals,
        waiting requests, per-token times, KV utilisation and active sessions per server (a heat map
        above 12 servers), reconstructed from the per-request records; saved to ``path`` (e.g. PNG)
        when given.  ``marks``: server-event marks ``(time_s, server, event)``; default: the run's own
        :attr:`server_events` (churn)."""
        from .timeline import plot_result

        return plot_result(self, path, self.server_events if marks is None else marks)


def policy_name(policy: Any) -> str:
    if isinstance(policy, str):
        return policy
    return str(getattr(policy, "name", type(policy).__name__))


def allocation_delay_for(scenario: Scenario, family: str, delays: Mapping[str, float] | None = None) -> float:
    """The allocation delay (s) per request of ``family``: ``delays`` (default: the scenario's
    ``simulator.allocation_delay_s``) looked up by :func:`distllm_env.registry.family_delay_s`."""
    return family_delay_s(scenario.simulator.allocation_delay_s if delays is None else delays, family)


def run_routing(sim: Simulation, router: Any, rng: np.random.Generator, splitter: Any = None) -> list[float]:
    """Route every request of ``sim`` with ``router``; returns per-decision wall times (s).

    ``splitter`` (split inference) has ``plan(request, instance) -> ClientPart`` and is asked before
    each routing decision how many leading blocks the client runs itself."""
    times = []
    view = sim.view
    if hasattr(sim, "set_failover_router"):      # churn: failed segments use the same router
        sim.set_failover_router(router, rng)
    while (req := sim.next_request()) is not None:
        if splitter is not None:
            req = sim.apply_split(splitter.plan(req, sim.instance))
        t0 = time.perf_counter()
        try:
            route = router.route(req, view, rng)
        except NoFeasibleChain:
            times.append(time.perf_counter() - t0)
            sim.reject(req, "no_feasible_chain")
            continue
        times.append(time.perf_counter() - t0)
        sim.commit(req, route)
    return times


def place(instance: Instance, placement: Any, rng: np.random.Generator, scenario: Scenario | None = None, *,
          field: str = "placement") -> tuple[PlacementResult, str, float]:
    """Resolve and run a placement: returns (result, name, wall time in s).  ``placement`` is a
    :class:`PlacementResult`, a :class:`Placement`, a policy object, a registered name or an import
    path given by the caller (see :func:`distllm_env.registry.make_placement`, which raises)."""
    if isinstance(placement, PlacementResult):
        return placement, "given", 0.0
    if isinstance(placement, Placement):
        return PlacementResult(placement), "given", 0.0
    policy = make_placement(placement, scenario, field=field)
    t0 = time.perf_counter()
    result = policy.place(instance, rng)
    return result, policy_name(policy), time.perf_counter() - t0


def simulate(
    scenario: "str | Scenario | Mapping",
    placement: Any = None,
    routing: Any = None,
    *,
    seed: int = 0,
    overrides: Sequence[str] = (),
    allocation_delays: Mapping[str, float] | None = None,
    requests: Sequence[Request] | None = None,
    splitter: Any = None,
    allow_imports: bool = False,
    allocation_delay_family: str | None = None,
) -> SimulationResult:
    """Simulate ``scenario`` for one ``seed`` under a placement and a routing policy.

    ``placement`` / ``routing`` are registered names (``even``, ``shortest``, …), ``module:Class``
    import paths, policy objects, or (placement only) a :class:`Placement` / :class:`PlacementResult`;
    ``None`` takes the scenario's ``policy_defaults`` (else ``cg-bp`` / ``ws-rr``).  Import paths are
    imported only when given here; the scenario's ``policy_defaults`` may name one only with
    ``allow_imports=True`` (README, "Trust boundary").  Both policies are resolved and checked
    (``place`` / ``route``) before anything runs.
    ``allocation_delays`` replaces the scenario's per-family delays (e.g. ``{}`` for none).  The family
    charged (docs/contracts.md §4) is ``allocation_delay_family`` when given, else that of the compare
    preset the two registered names form (``None``: the scenario's default names; an instance of exactly a
    registered class counts as its name); any other policy object — a subclass of a baseline included — is
    family ``default`` (:func:`distllm_env.allocation_delays.policy_family`).  On ``paper-*`` a user's router therefore pays
    0 s where ``"ws-rr"`` by name pays the ``proposed`` 60 s: compare routers with
    :func:`distllm_env.compare.compare` (``auto``) or ``allocation_delays={}``.
    ``splitter`` (split inference) decides per request how many leading blocks the client runs
    (``plan(request, instance) -> ClientPart``).

    Raises :class:`~distllm_env.errors.ScenarioError` (bad scenario, refused import path, bad policy
    option) and :class:`~distllm_env.errors.PolicyLoadError` (unknown name, failed import, missing
    ``place`` / ``route``).
    """
    seed = check_seed(seed)
    sc = load_scenario(scenario, overrides)
    check_scenario_policies(sc, allow_imports)
    if allocation_delay_family is None:     # names only: an object is family ``default`` (contracts §4)
        allocation_delay_family = policy_family(
            default_placement(sc, allow_imports=allow_imports) if placement is None else placement,
            default_routing(sc, allow_imports=allow_imports) if routing is None else routing)
    if not isinstance(placement, (Placement, PlacementResult)):
        placement = resolve_placement(placement, sc, allow_imports=allow_imports)
    router = resolve_routing(routing, sc, allow_imports=allow_imports)
    inst = build_instance(sc, seed)
    reqs = list(requests) if requests is not None else generate_requests(inst, seed)
    placement_rng, routing_rng = generators(seed_streams(seed)["policy"], 2)
    presult, pname, t_place = place(inst, placement, placement_rng, sc)
    rname = policy_name(router)
    family = allocation_delay_family
    delays = dict(sc.simulator.allocation_delay_s if allocation_delays is None else allocation_delays)
    delay = allocation_delay_for(sc, family, delays)
    sim = new_simulation(inst, presult, reqs, reservation=sc.simulator.reservation, backoff=sc.simulator.backoff,
                         allocation_delay_s=delay)
    if hasattr(sim, "set_placement_policy"):        # churn: online re-placement of joining servers
        sim.set_placement_policy(placement, placement_rng)
    t0 = time.perf_counter()
    decision_times = run_routing(sim, router, routing_rng, splitter)
    t_route = time.perf_counter() - t0
    records = sim.finished_records()
    summary = summarize(records, sim.capacity_bytes)
    summary["max_concurrent_sessions"] = sim.max_active_sessions
    summary["allocation_delay_s"] = delay
    if hasattr(sim, "churn_summary"):               # churn: block moves, reload time, arrivals (docs/contracts.md §6)
        summary.update(sim.churn_summary())
    meta = {
        "version": __version__, "scenario": sc.name, "scenario_hash": sc.hash, "scenario_source": sc.source,
        "overrides": list(sc.overrides), "seed": seed, "placement": pname, "routing": rname, "family": family,
        "cache_policy": str(presult.cache_policy), **admission_meta(sim, sc.simulator.reservation),
        "backoff": sc.simulator.backoff, "engine": "live" if isinstance(sim, LiveSimulation) else "analytic",
        "allocation_delays_s": delays, "allocation_delay_applied_s": delay,
        "derived_calibrations": inst.derived_calibrations(),
    }
    if any(v > 0 for v in delays.values()):
        meta["allocation_delay_note"] = ALLOCATION_DELAY_NOTE
    add_data_attribution(meta, sc)                  # a built-in Azure trace: CC-BY 4.0 attribution
    dt = np.asarray(decision_times) if decision_times else np.zeros(1)
    timings = {"placement_time_s": t_place, "routing_time_total_s": t_route,
               "routing_decision_mean_s": float(dt.mean()), "routing_decision_median_s": float(np.median(dt)),
               "routing_decision_max_s": float(dt.max())}
    return SimulationResult(sc, inst, seed, presult, pname, rname, family, records, summary, meta, timings,
                            server_events=list(getattr(sim, "server_log", ())))


__all__ = ["SimulationResult", "allocation_delay_for", "place", "run_routing", "simulate"]

"""Lookahead: a rollout router over sampled futures (issue 13 item 2; docs/baselines.md "Lookahead").

For each arriving request r the router takes the ``k`` cheapest chains under its base router's WS-RR
link cost (arXiv 2512.21884 Algorithm 2: waiting time + prefill-aware service time per hop, plus the
contention term of ``ws-rr-load``, docs/baselines.md "WS-RR-load"), and for each chain:

1. forks the running simulation (:meth:`ClusterView.fork`, docs/architecture.md "Forking a
   simulation") with the requests not yet arrived REPLACED by ``horizon`` sampled ones,
2. commits r on the chain in the fork and routes the sampled requests with the base router until every
   session has ended,
3. scores the chain by the per-token time of r and the sampled requests,
   Σ(completion − arrival) / Σ output tokens (the ``mean_per_token_time_s`` formula of
   docs/contracts.md §6), averaged over ``rollouts`` sampled futures.

The chain with the lowest mean score wins (ties: the cheaper chain under the base cost).  The same
``rollouts`` futures are used for every candidate (common random numbers), so differences between
chains are not sampling noise.  Sampled futures never read the true future:

* ``poisson`` / ``gamma`` / ``mmpp`` workloads: arrivals from now on with the scenario's process
  (:mod:`distllm_env.arrivals`), lengths from its length distributions through
  :func:`~distllm_env.lengths.admit_lengths`, clients by the scenario's weights;
* ``trace`` workloads: Poisson arrivals at the rate seen so far (requests routed / now) and
  (client, prompt, declared output) triples resampled from the requests this router has routed; with
  unknown lengths the true output is resampled from the requests completed by now
  (:meth:`ClusterView.finished_output_tokens`), the declared one while none has completed.

All draws come from the router's own ``rng`` (the ``policy`` seed stream, docs/contracts.md §1).
Limits: sessions already in flight keep the engine's lengths in the fork (on the live engine with
unknown lengths their true remaining work is known to the rollout; the routed request itself runs with
its declared length); churn events in a rollout follow the engine's own streams.  When the
simulation cannot be forked (a churn failover segment) the base router decides.

Cost per decision: about ``k · rollouts`` forks (≈ 1 ms each on ``azure-conv-swarm`` mid-run) and
``k · rollouts · horizon`` base-router decisions plus the in-flight sessions' events.
"""

from __future__ import annotations

import math

import numpy as np

from distllm_env.arrivals import gamma_arrivals, mmpp_arrivals, poisson_arrivals
from distllm_env.chains import HopCost, Route
from distllm_env.errors import NoFeasibleChain
from distllm_env.lengths import admit_lengths
from distllm_env.policy_options import check_int, option_error
from distllm_env.registry import ROUTING_POLICIES, make_routing
from distllm_env.view import ClusterView
from distllm_env.workload import Request

from .ws_rr import LAST_HOP_S

#: most candidates / rollouts / horizon accepted (a decision costs k·rollouts·horizon base decisions)
MAX_K, MAX_ROLLOUTS, MAX_HORIZON = 16, 64, 1000


class LookaheadRouter:
    """Rollout router over sampled futures (``lookahead``, family ``default``; module docstring).

    Options: ``k`` (1..16, default 3) candidate chains, ``horizon`` (0..1000, default 8) sampled
    requests per rollout, ``rollouts`` (1..64, default 2) sampled futures, ``base`` (default
    ``ws-rr-load``) the registered router that ranks the candidates and routes the rollouts (any
    routing policy but ``lookahead``).  Bad values raise :class:`ScenarioError` at
    ``policy_defaults.options.lookahead.<option>``."""

    name = "lookahead"
    family = "default"

    def __init__(self, k: int = 3, horizon: int = 8, rollouts: int = 2, base: str = "ws-rr-load"):
        self.k = check_int(self.name, "k", k, 1, MAX_K)
        self.horizon = check_int(self.name, "horizon", horizon, 0, MAX_HORIZON)
        self.rollouts = check_int(self.name, "rollouts", rollouts, 1, MAX_ROLLOUTS)
        names = sorted(n for n in ROUTING_POLICIES if n != self.name)
        if not isinstance(base, str) or base not in names:
            raise option_error(self.name, "base", f"one of {names}", base)
        self.base_name = base
        self.base = make_routing(base, field=f"policy_defaults.options.{self.name}.base")
        self._view = None
        self._seen: list[tuple[int, int, int]] = []     # (client, prompt, declared output) routed so far

    # -- candidates ------------------------------------------------------------------------------------
    def candidates(self, request: Request, view: ClusterView) -> list[Route]:
        """The ``k`` cheapest chains under the base's WS-RR link cost (waits + static cost, plus the
        contention term when the base has one), finite-cost ones only, cheapest first.  Raises
        :class:`NoFeasibleChain` when there is no chain at all."""
        dag = view.feasible_dag(request.client, request.client_blocks)
        static = view.static_cost(request)
        extra = view.waiting_time_s(request, dag)
        contention = getattr(self.base, "contention_s", None)
        if contention is not None:
            extra = extra + contention(request, view, dag)
        sink = np.full(view.num_servers, LAST_HOP_S)
        chains = dag.k_cheapest(HopCost(static.fixed_s, static.per_block_s, edge_extra_s=extra, sink_s=sink), self.k)
        return [r for r, c in chains if math.isfinite(c)]

    # -- sampled futures -------------------------------------------------------------------------------
    def sample_future(self, request: Request, view: ClusterView, rng: np.random.Generator) -> list[Request]:
        """``horizon`` requests arriving after now, drawn from the scenario's workload model (trace:
        the rate and requests seen so far; module docstring).  Ids are provisional (``fork`` renumbers
        them after the requests already arrived)."""
        n = self.horizon
        if n == 0:
            return []
        inst = view.instance
        wl = inst.scenario.workload
        now = view.now_s
        ts = float(getattr(wl, "time_scale", 1.0))
        if wl.arrival == "trace":
            rate = (request.id + 1) / now if now > 0 else 1.0
            times = poisson_arrivals(rng, rate, n + 1)[1:]
            pick = rng.integers(0, len(self._seen), size=n)
            clients = [self._seen[i][0] for i in pick]
            prompt = np.array([self._seen[i][1] for i in pick], dtype=np.int64)
            output = np.array([self._seen[i][2] for i in pick], dtype=np.int64)
            if not wl.output_tokens_known:       # true lengths: those of requests finished by now
                seen_out = view.finished_output_tokens()
                if seen_out:
                    output = np.asarray(seen_out, dtype=np.int64)[rng.integers(0, len(seen_out), size=n)]
        else:
            if wl.arrival == "gamma":
                times = gamma_arrivals(rng, wl.arrival_rate_per_s, wl.cv, n + 1)[1:] / ts
            elif wl.arrival == "mmpp":
                t = mmpp_arrivals(rng, wl.rates_per_s, wl.mean_sojourn_s, n + 1)
                times = (t[1:] - t[0]) / ts
            else:
                times = poisson_arrivals(rng, wl.arrival_rate_per_s, n + 1)[1:] / ts
            prompt = wl.prompt_tokens.sample(rng, n)
            output = wl.output_tokens.sample(rng, n)
            if inst.num_clients == 1:
                clients = [0] * n
            else:
                w = np.array([c.weight for c in inst.clients], dtype=float)
                clients = [int(c) for c in rng.choice(inst.num_clients, size=n, p=w / w.sum())]
        adm = admit_lengths(prompt, output, inst.model.max_sequence_tokens, wl.over_length, wl.output_tokens_known,
                            wl.max_length)
        known = bool(wl.output_tokens_known)
        times = now + np.maximum.accumulate(np.asarray(times, dtype=float))
        return [Request(id=request.id + 1 + i, client=int(clients[i]), arrival_s=float(times[i]),
                        prompt_tokens=int(prompt[i]), output_tokens=int(adm.output_tokens[i]),
                        declared_output_tokens=int(adm.declared_output_tokens[i]), output_tokens_known=known,
                        rejection="exceeds_max_sequence" if adm.rejected[i] else None,
                        truncated=bool(adm.truncated[i]))
                for i in range(n)]

    # -- rollouts --------------------------------------------------------------------------------------
    def rollout_score(self, request: Request, route: Route, view: ClusterView, future: list[Request],
                      seed: int) -> float:
        """Per-token time (s/token) of ``request`` on ``route`` and the ``future`` requests routed by
        the base, in a fork of the running simulation; ``inf`` if ``request`` is rejected there."""
        sim = view.fork(future)
        rng = np.random.default_rng(seed)
        if hasattr(sim, "set_failover_router"):          # churn: failovers in the rollout use the base
            sim.set_failover_router(self.base, rng)
        if sim.commit(request, route).status == "rejected":
            return math.inf
        while (q := sim.next_request()) is not None:
            try:
                sim.commit(q, self.base.route(q, sim.view, rng))
            except NoFeasibleChain:
                sim.reject(q, "no_feasible_chain")
        n = len(sim.records)
        ids = [request.id, *range(n - len(future), n)]     # the future is renumbered after the arrived ids
        done = [sim.records[i] for i in ids if sim.records[i] is not None and sim.records[i].completed]
        tokens = sum(r.output_tokens for r in done)
        return sum(r.completion_s - r.arrival_s for r in done) / tokens if tokens else math.inf

    def route(self, request: Request, view: ClusterView, rng: np.random.Generator) -> Route:
        if view is not self._view:
            self._view, self._seen = view, []
        self._seen.append((request.client, request.prompt_tokens, int(request.declared_output_tokens)))
        if not view.can_fork():
            return self.base.route(request, view, rng)
        try:
            chains = self.candidates(request, view)
        except NoFeasibleChain:
            chains = []
        if len(chains) <= 1:
            return chains[0] if chains else self.base.route(request, view, rng)
        futures = [self.sample_future(request, view, rng) for _ in range(self.rollouts)]
        seeds = rng.integers(0, 2**63 - 1, size=self.rollouts)
        scores = [float(np.mean([self.rollout_score(request, c, view, f, int(s)) for f, s in zip(futures, seeds)]))
                  for c in chains]
        return chains[int(np.argmin(scores))]


__all__ = ["LookaheadRouter"]

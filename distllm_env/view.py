"""ClusterView: the read-only view of the simulator that routing policies see (docs/contracts.md §7).

The core owns Lemma 1, m_ij, the block-ordered DAG, shortest and K-cheapest chains and the waiting
times t^W_ij(t); a policy supplies only decision rules and edge weights (:class:`HopCost`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from .chains import ChainDAG, HopCost, Route, route_from_chain
from .errors import DistLLMError
from .perf import static_request_cost_terms_s
from .reservations import ReservationBook
from .scenario.fidelity import scenario_fidelity

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    from .instance import Instance
    from .placement import CachePolicy, Placement
    from .workload import Request


class SimulationState(Protocol):
    """What the view reads from a running simulation (implemented by
    :class:`~distllm_env.simulator.Simulation`; declared here so the view does not import the
    simulator).  Times in seconds, capacities in bytes."""

    instance: "Instance"
    placement: "Placement"
    cache_policy: "CachePolicy"
    capacity_bytes: np.ndarray
    book: ReservationBook
    now_s: float
    current_request: "Request | None"

    def active_sessions_on(self, server: int) -> int: ...

    def queued_work_s(self, server: int) -> float: ...

    # optional: ``fork(future=None)`` -> an independent copy of the running simulation (``None``: the
    # true future; :meth:`ClusterView.fork` never passes ``None``; docs/architecture.md "Forking a
    # simulation")


class ClusterView:
    """Read-only state of a running :class:`~distllm_env.simulator.Simulation` (any
    :class:`SimulationState`).

    Arrays are indexed ``[client, server]`` or ``[server]``.  ``prefill_cost_s`` is t^I_cj for the
    prompt length of the request currently being routed (``view.request``)."""

    def __init__(self, sim: SimulationState):
        self._sim = sim
        inst = sim.instance
        self.instance = inst
        self.placement = sim.placement
        self.cache_policy = sim.cache_policy
        self.rtt_s = inst.rtt_s
        self.token_cost_s = inst.token_cost_s
        self.tau_decode_s = inst.tau_decode_s
        self.capacity_bytes = sim.capacity_bytes
        self.num_servers = inst.num_servers
        self.num_clients = inst.num_clients
        self.num_blocks = inst.num_blocks
        self._dags: dict[int, ChainDAG] = {}

    # -- time and the request being routed ---------------------------------------------------------
    @property
    def now_s(self) -> float:
        return self._sim.now_s

    @property
    def request(self) -> "Request | None":
        return self._sim.current_request

    @property
    def server_rtt_s(self) -> np.ndarray:
        return self.instance.server_rtt_s

    @property
    def prefill_cost_s(self) -> np.ndarray:
        """t^I_cj(l_in) for the request being routed, shape (num_clients, num_servers), seconds.
        Raises ``RuntimeError`` when no request is being routed."""
        req = self.request
        if req is None:
            raise RuntimeError("prefill_cost_s needs a request being routed; use prefill_comm_s(prompt_tokens)")
        return self.instance.prefill_comm_s(req.prompt_tokens)

    def prefill_comm_s(self, prompt_tokens: int) -> np.ndarray:
        return self.instance.prefill_comm_s(prompt_tokens)

    def tau_prefill_s(self, prompt_tokens: int) -> np.ndarray:
        return self.instance.tau_prefill_s(prompt_tokens)

    # -- memory --------------------------------------------------------------------------------------
    def kv_bytes_per_block(self, request: "Request") -> int:
        """KV bytes this request needs per processed block (its own lengths)."""
        return self.instance.model.kv_bytes_per_block(request.prompt_tokens, request.output_tokens)

    def free_bytes(self, server: int, t: float | None = None) -> int:
        """KV bytes free on ``server`` at time ``t`` (default now).  Raises ``ValueError`` under the
        calendar accounting for a time before now (that history is forgotten)."""
        return self._sim.book.free_bytes(server, self.now_s if t is None else t)

    def free_slots(self, server: int, t: float | None = None, kv_block_bytes: int | None = None) -> int:
        """Free KV slots (one session × one block) at time t, by default at the scenario's maximum
        lengths (s_c)."""
        size = kv_block_bytes or self.instance.kv_block_bytes
        return max(self.free_bytes(server, t), 0) // size

    def release_schedule(self, server: int) -> tuple[np.ndarray, np.ndarray]:
        """``(times_s, free_bytes)``: from ``times_s[k]`` on, at least ``free_bytes[k]`` bytes are free
        (under ``published`` accounting: after each future release)."""
        return self._sim.book.free_profile(server, self.now_s)

    # -- load (server contention, docs/contracts.md §7) ----------------------------------------------
    def active_sessions(self, server: int) -> int:
        """Sessions holding a span on ``server`` now (admitted, not yet completed)."""
        return int(self._sim.active_sessions_on(server))

    def queued_work_s(self, server: int) -> float:
        """Step time (s) queued or in service on ``server`` now: 0 under ``independent``; under
        ``serial`` the server's busy-until − now; under ``batched`` the running iteration's rest plus one
        iteration of the waiting steps."""
        return float(self._sim.queued_work_s(server))

    # -- what-if (lookahead routers, docs/baselines.md "Lookahead") -----------------------------------
    def can_fork(self) -> bool:
        """Whether the simulation behind this view can be forked (:meth:`fork`)."""
        return callable(getattr(self._sim, "fork", None))

    def finished_output_tokens(self) -> list[int]:
        """Output tokens of the requests completed by now, in request-id order (what their clients have
        seen; with unknown lengths the only true lengths a router may learn).  Empty when the
        simulation keeps no records."""
        now = self.now_s
        return [int(r.output_tokens) for r in getattr(self._sim, "records", ())
                if r is not None and r.status == "completed" and r.completion_s <= now]

    def fork(self, future: "Sequence[Request] | None" = ()):
        """An independent copy of the running simulation (``Simulation.fork`` /
        ``LiveSimulation.fork``) for what-if rollouts, whose requests not yet arrived are REPLACED by
        ``future``: a sequence of requests (ids are renumbered), arriving at or after now, in order.
        The default ``()`` (and ``None``) means no future arrivals: a router never gets the true future
        through the view.  On the live engine the request being routed runs in the copy with its
        declared length; sessions in flight keep the engine's lengths (docs/contracts.md §7).

        The request being routed is still PENDING in the copy (``copy.current_request``): commit or
        reject it there before ``copy.next_request()``, which raises otherwise.  Drive the copy with
        ``next_request`` / ``commit`` / ``reject`` until ``next_request()`` returns ``None``; then
        ``copy.finished_records()`` is its per-request table (docs/architecture.md "Forking a
        simulation" has a runnable example).  Nothing done to the copy reaches the running simulation.
        Raises :class:`~distllm_env.errors.DistLLMError` if the simulation cannot be forked (e.g. the
        view of a churn failover segment) or ``future`` is bad."""
        if not self.can_fork():
            raise DistLLMError(f"{type(self._sim).__name__} cannot be forked")
        return self._sim.fork(() if future is None else future)

    # -- chains --------------------------------------------------------------------------------------
    def set_placement(self, placement: "Placement") -> None:
        """The placement in force changed (churn: servers down, back, or on new spans): routers see
        it from now on, and chain DAGs built on the old one are dropped."""
        self.placement = placement
        self._dags = {}

    def feasible_dag(self, client: int = 0, client_blocks: int = 0) -> ChainDAG:
        """The block-ordered DAG of Lemma-1-feasible hops (its structure does not depend on the
        client; costs do)."""
        dag = self._dags.get(client_blocks)
        if dag is None:
            ties = scenario_fidelity(self.instance.scenario).path_ties     # docs/fidelity.md, reading 4
            dag = self._dags[client_blocks] = ChainDAG(self.placement, client_blocks, ties=ties)
        return dag

    def decode_cost(self, client: int) -> HopCost:
        """Per-token decode cost t_cj + τ_j·m_ij (the static cost the MILP and CG-BPRR minimise)."""
        return HopCost(fixed_s=self.token_cost_s[client], per_block_s=self.tau_decode_s)

    def static_cost(self, request: "Request") -> HopCost:
        """Prefill-aware static cost of a request, Σ[t^I + (l−1)·t] + [τ^I + (l−1)·τ]·m_ij
        (:func:`~distllm_env.perf.static_request_cost_terms_s`; the WS-RR link cost without waiting).
        Arrays of shape (num_servers,), seconds."""
        c = request.client
        reach = self.reachable(c)
        with np.errstate(invalid="ignore"):        # 0·inf for an unreachable server when l = 1
            fixed, per_block = static_request_cost_terms_s(
                self.instance.prefill_comm_s(request.prompt_tokens)[c],
                self.instance.tau_prefill_s(request.prompt_tokens), self.token_cost_s[c], self.tau_decode_s,
                request.output_tokens)
        if not reach.all():
            fixed = np.where(reach, fixed, np.inf)
        return HopCost(fixed_s=fixed, per_block_s=per_block)

    def reachable(self, client: int) -> np.ndarray:
        """Boolean array (num_servers,): server j is reachable from ``client`` (finite RTT).  Routers
        consider only chains whose hops are all reachable; the simulator rejects any other route
        (``unreachable``)."""
        return np.isfinite(self.rtt_s[client])

    def unreachable_edge_cost_s(self, client: int, dag: ChainDAG) -> np.ndarray | None:
        """Per edge of ``dag`` (shape (dag.num_edges,)): ``inf`` for an edge into a server that
        ``client`` cannot reach, else 0 — add it to a policy's ``edge_extra_s`` so that its search
        never picks such a chain.  ``None`` when every server is reachable (nothing to add)."""
        reach = self.reachable(client)
        if reach.all():
            return None
        return np.where(reach[dag.edge_dst_server], 0.0, np.inf)

    def waiting_time_s(self, request: "Request", dag: ChainDAG | None = None) -> np.ndarray:
        """t^W_ij(now) for every edge of ``dag``: the time until server j has room for m_ij blocks of
        this request's KV cache (``inf`` if it never will)."""
        dag = dag or self.feasible_dag(request.client, request.client_blocks)
        per_block = self.kv_bytes_per_block(request)
        need = dag.edge_blocks * per_block
        out = np.zeros(dag.num_edges)
        book, now, ptr = self._sim.book, self.now_s, dag._ptr_list
        max_blocks, servers = dag._max_in_blocks, dag._server_list
        for k in range(dag.n):           # a node's incoming edges are contiguous
            if max_blocks[k] < 0:
                continue
            j = servers[k]
            # fast path: the bytes that stay free from now on cover the largest need → every
            # incoming edge waits 0 (exactly what wait_for returns for need ≤ free[0])
            if book.stays_free_bytes(j, now) >= max_blocks[k] * per_block:
                continue
            out[ptr[k]:ptr[k + 1]] = book.wait_s(j, now, need[ptr[k]:ptr[k + 1]])
        return out

    def shortest(self, client: int, cost: HopCost, client_blocks: int = 0) -> tuple[Route, float]:
        return self.feasible_dag(client, client_blocks).shortest(cost)

    def k_cheapest(self, client: int, K: int, cost: HopCost, client_blocks: int = 0) -> list[tuple[Route, float]]:
        return self.feasible_dag(client, client_blocks).k_cheapest(cost, K)

    def route_from_chain(self, servers, client_blocks: int = 0) -> Route:
        return route_from_chain(self.placement, servers, client_blocks)


__all__ = ["ClusterView"]

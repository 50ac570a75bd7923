"""The offline BPRR problem (docs/model.md §9): place blocks and route a fixed set of concurrent
requests, minimising the decode-phase cost l_max · Σ_r Σ_{(i,j)∈p_r} (t_{c_r j} + τ_j·m_ij).

This is the common ground of the MILP, CG-BP/CG-BPRR's Theorem 2 bound and exhaustive search: all
three read the same :class:`OfflineProblem` and judge solutions with the same functions here, which
in turn use the core's route feasibility (:mod:`distllm_env.chains`) and memory rule
s_m·m_j + s_c·Σ_r k_rj ≤ M_j (docs/model.md §2.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .chains import Route, check_route
from .instance import Instance
from .perf import decode_hop_cost_s
from .placement import Placement


@dataclass(frozen=True, eq=False)
class OfflineProblem:
    """An offline instance.  Arrays are indexed by server j and client c; ``requests[c]`` is the
    number of concurrent requests of client c (requests of one client are interchangeable)."""

    num_blocks: int
    block_bytes: int
    kv_block_bytes: int
    memory_bytes: np.ndarray
    max_blocks: np.ndarray
    tau_s: np.ndarray
    token_cost_s: np.ndarray
    requests: np.ndarray
    output_tokens: int

    def __post_init__(self):
        object.__setattr__(self, "memory_bytes", np.asarray(self.memory_bytes, dtype=np.int64))
        object.__setattr__(self, "max_blocks", np.asarray(self.max_blocks, dtype=np.int64))
        object.__setattr__(self, "tau_s", np.asarray(self.tau_s, dtype=float))
        object.__setattr__(self, "token_cost_s", np.atleast_2d(np.asarray(self.token_cost_s, dtype=float)))
        object.__setattr__(self, "requests", np.asarray(self.requests, dtype=np.int64))
        n = len(self.memory_bytes)
        if not (len(self.max_blocks) == len(self.tau_s) == self.token_cost_s.shape[1] == n):
            raise ValueError("memory_bytes, max_blocks, tau_s and token_cost_s columns must have one entry per server")
        if self.token_cost_s.shape[0] != len(self.requests):
            raise ValueError("token_cost_s must have one row per client (len(requests))")

    @property
    def num_servers(self) -> int:
        return len(self.memory_bytes)

    @property
    def num_clients(self) -> int:
        return len(self.requests)

    @property
    def total_requests(self) -> int:
        return int(self.requests.sum())

    def reachable_servers(self) -> np.ndarray:
        """Boolean array (num_servers,): servers with a finite t_cj for at least one client that has
        requests (a server no such client reaches can serve nothing and is left out of planning)."""
        active = self.requests > 0
        return np.isfinite(self.token_cost_s[active]).any(axis=0)

    @classmethod
    def from_instance(cls, instance: Instance, requests_per_client: Sequence[int] | int,
                      output_tokens: int | None = None) -> "OfflineProblem":
        """The offline problem of a simulator instance: s_c at the scenario's maximum lengths,
        l_max = the scenario's maximum output length unless given."""
        C = instance.num_clients
        req = np.full(C, int(requests_per_client)) if np.isscalar(requests_per_client) else np.asarray(requests_per_client)
        L = instance.num_blocks
        return cls(
            num_blocks=L, block_bytes=instance.block_bytes, kv_block_bytes=instance.kv_block_bytes,
            memory_bytes=instance.memory_bytes,
            max_blocks=np.array([L if c is None else min(c, L) for c in instance.max_blocks]),
            tau_s=instance.tau_decode_s, token_cost_s=instance.token_cost_s, requests=req,
            output_tokens=int(output_tokens if output_tokens is not None else instance.scenario.max_output_tokens),
        )

    def chain_cost_s(self, route: Route, client: int) -> float:
        """Per-token decode cost of one route: Σ_hops (t_cj + τ_j·m_ij)."""
        return float(sum(decode_hop_cost_s(self.token_cost_s[client, h.server], self.tau_s[h.server], h.blocks)
                         for h in route.hops))

    def objective_s(self, placement: Placement, routes: Sequence[tuple[int, Route]]) -> float:
        """l_max · Σ_r per-token cost of request r's route; ``routes`` lists (client, route) per request.
        Raises :class:`~distllm_env.errors.RouteError` for an infeasible route."""
        total = 0.0
        for c, r in routes:
            check_route(placement, r)
            total += self.chain_cost_s(r, c)
        return self.output_tokens * total

    def memory_used_bytes(self, placement: Placement, routes: Sequence[tuple[int, Route]]) -> np.ndarray:
        """s_m·m_j + s_c·Σ_r k_rj per server."""
        used = self.block_bytes * placement.count_array.astype(np.int64)
        for _, r in routes:
            for h in r.hops:
                used[h.server] += self.kv_block_bytes * h.blocks
        return used

    def is_feasible(self, placement: Placement, routes: Sequence[tuple[int, Route]]) -> bool:
        """Placement within caps, every route Lemma-1 feasible, memory within M_j, and the number of
        routes per client equal to ``requests``."""
        if np.any(placement.count_array > self.max_blocks):
            return False
        counts = np.zeros(self.num_clients, dtype=np.int64)
        for c, r in routes:
            try:
                check_route(placement, r)
            except Exception:  # noqa: BLE001 - any infeasibility means "not feasible"
                return False
            counts[c] += 1
        if not np.array_equal(counts, self.requests):
            return False
        return bool(np.all(self.memory_used_bytes(placement, routes) <= self.memory_bytes))


__all__ = ["OfflineProblem"]

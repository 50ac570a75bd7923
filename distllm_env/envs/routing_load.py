"""Load features of the RequestRouting env (docs/envs.md "Load features"; issue 13 item 3).

Per server: active sessions (:meth:`ClusterView.active_sessions`), queued step time
(:meth:`ClusterView.queued_work_s`) and an EWMA of the observed per-token decode time of the sessions
through it that ended.  Per candidate chain, aggregated over its hops (max / sum, padded to K): those,
the least free KV fraction, and ws-rr-load's load-aware per-token estimate, with the contention term
of docs/baselines.md "WS-RR-load" (``baselines/ws_rr_load.py``), so a learner sees the signal the
strongest load-aware heuristic uses.  :class:`RoutingLoadMixin` holds the env's part; the env calls
:meth:`~RoutingLoadMixin._start_load` per episode, :meth:`~RoutingLoadMixin._update_step_ewma` for the
sessions that ended and :meth:`~RoutingLoadMixin._load_observation` per observation.
"""

from __future__ import annotations

import math

import numpy as np

from ..perf import batched_iteration_time_s, decode_flops_time_s, hop_compute_s
from .spaces import Feature

#: smoothing factor of the per-server EWMA of observed per-token step times (load features)
STEP_EWMA_ALPHA = 0.2
#: upper clip of the session-count features
MAX_SESSIONS = 4096.0


def load_layout(S: int, K: int, T: float) -> list[Feature]:
    """The load features' observation keys for ``S`` servers, ``K`` candidates, time clip ``T`` (s)."""
    return [
        Feature("server_active_sessions", S, 0, MAX_SESSIONS, "sessions",
                "sessions holding a span on j now (ClusterView.active_sessions)"),
        Feature("server_queued_s", S, 0, T, "s", "step time queued or in service on j now "
                                                  "(ClusterView.queued_work_s; 0 under independent)"),
        Feature("server_step_ewma_s", S, 0, T, "s",
                f"EWMA (α = {STEP_EWMA_ALPHA:g}) of the observed per-token decode time (completion − first "
                "token)/(l_out − 1) of the sessions through j that ended (0 until one ends; live engine)"),
        Feature("cand_active_max", K, 0, MAX_SESSIONS, "sessions", "max over the chain's hops of server_active_sessions"),
        Feature("cand_active_sum", K, 0, MAX_SESSIONS, "sessions", "sum over the chain's hops of server_active_sessions"),
        Feature("cand_queued_max_s", K, 0, T, "s", "max over the chain's hops of server_queued_s"),
        Feature("cand_queued_sum_s", K, 0, T, "s", "sum over the chain's hops of server_queued_s"),
        Feature("cand_free_min", K, 0, 1, "fraction", "least server_free_frac over the chain's hops"),
        Feature("cand_step_ewma_max_s", K, 0, T, "s", "max over the chain's hops of server_step_ewma_s"),
        Feature("cand_load_per_token_s", K, 0, T, "s",
                "ws-rr-load's load-aware estimate per declared token: (cand_static_s + cand_wait_s + Σ_hops "
                "contention)/l_out, contention as baselines/ws_rr_load.py (docs/baselines.md \"WS-RR-load\")"),
    ]


class RoutingLoadMixin:
    """The load-feature part of :class:`~distllm_env.envs.routing.RequestRoutingEnv` (module docstring)."""

    def _start_load(self, inst) -> None:
        """Per-episode state: the step-time EWMA, the server model, F_tok/F_j (s per token·block)."""
        self._step_ewma = np.zeros(inst.num_servers)
        self._server_model = str(getattr(self.scenario.simulator, "server_model", "independent"))
        if self._server_model == "batched":
            peak = np.array([float(s.gpu.dense_bf16_flops) for s in inst.servers])
            self._flop_s_per_block = decode_flops_time_s(1.0, float(inst.model.flops_per_token_per_block), peak)

    def _update_step_ewma(self, ids) -> None:
        """Fold the observed per-token decode time of each ended session into its servers' EWMA."""
        ewma, a, recs = self._step_ewma, STEP_EWMA_ALPHA, self.sim.records
        for i in ids:
            rec = recs[i]
            if rec.output_tokens < 2 or rec.route is None:
                continue
            x = (rec.completion_s - rec.first_token_s) / (rec.output_tokens - 1)
            if not math.isfinite(x):
                continue
            for h in rec.route.hops:
                j = h.server
                ewma[j] = x if ewma[j] == 0.0 else (1.0 - a) * ewma[j] + a * x

    def _load_observation(self, obs: dict, req, free: np.ndarray) -> None:
        """The load features (docs/envs.md "Load features") of the current request's candidates."""
        sim, c, N = self.sim, self._cands, self.instance.num_servers
        active = np.array([sim.active_sessions_on(j) for j in range(N)], dtype=float)
        queued = np.array([sim.queued_work_s(j) for j in range(N)], dtype=float)
        obs["server_active_sessions"][:N] = active
        obs["server_queued_s"][:N] = queued
        obs["server_step_ewma_s"][:N] = self._step_ewma
        n, srv, seg = len(c.routes), c.hop_server, c.seg
        a, q = active[srv], queued[srv]
        obs["cand_active_max"][:n] = np.maximum.reduceat(a, seg)
        obs["cand_active_sum"][:n] = np.add.reduceat(a, seg)
        obs["cand_queued_max_s"][:n] = np.maximum.reduceat(q, seg)
        obs["cand_queued_sum_s"][:n] = np.add.reduceat(q, seg)
        obs["cand_free_min"][:n] = np.minimum.reduceat(free[srv], seg)
        obs["cand_step_ewma_max_s"][:n] = np.maximum.reduceat(self._step_ewma[srv], seg)
        wait = np.array([np.inf if s is None else s - sim.now_s for s in self._starts])
        cont = np.add.reduceat(self.hop_contention_s(req, srv, c.hop_blocks, a, q), seg)
        obs["cand_load_per_token_s"][:n] = (c.static_s + wait + cont) / req.output_tokens

    def hop_contention_s(self, req, servers: np.ndarray, blocks: np.ndarray, active: np.ndarray,
                         queued: np.ndarray) -> np.ndarray:
        """ws-rr-load's expected contention (s) of ``req`` on hops (servers j, blocks m) with ``active``
        sessions n_j and ``queued`` work q_j there (shapes (H,)), weight 1 (baselines/ws_rr_load.py,
        docs/baselines.md "WS-RR-load"): ``serial`` l·n_j·m·τ_j + q_j; ``batched``
        l·max(max(τ_j·H_j, (n_j + 1)·m·F_tok/F_j) − m·τ_j, 0) (0 for n_j = 0) + q_j; ``independent`` 0;
        l = the declared output length.  Needs ``config["load_features"]``."""
        model = self._server_model
        if model == "independent":
            return np.zeros(len(servers))
        tau = self.instance.tau_decode_s[servers]
        own = hop_compute_s(tau, blocks)
        steps = float(req.output_tokens)
        if model == "serial":
            per_step = active * own
        else:
            span = np.asarray(self.sim.placement.count_array, dtype=float)[servers]
            batch = batched_iteration_time_s(hop_compute_s(tau, span), (active + 1.0) * blocks * self._flop_s_per_block[servers])
            per_step = np.where(active > 0, np.maximum(batch - own, 0.0), 0.0)
        return steps * per_step + queued


__all__ = ["MAX_SESSIONS", "STEP_EWMA_ALPHA", "RoutingLoadMixin", "load_layout"]

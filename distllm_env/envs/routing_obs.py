"""Spaces, action masks, observations, candidate helpers and rendering of ``distllm/RequestRouting-v0``.

:class:`RoutingObservationMixin` holds the methods of :class:`~distllm_env.envs.routing.RequestRoutingEnv`
that describe a decision rather than make it: the observation layout and action space
(``_build_spaces``; features in docs/envs.md, candidates in docs/contracts.md §9), the action mask, the
observation of the request being routed, the helpers env policies use (``candidate_routes``,
``expected_per_token_s``, ``greedy_action``) and the text / RGB renderings.  Split out of
envs/routing.py (same code, no behaviour change); the episode state it reads is set up there.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from ..chains import Route
from .render import bar, coverage_load_rgb
from .routing_load import load_layout
from .spaces import Feature, ObsLayout


class RoutingObservationMixin:
    """Observation side of :class:`~distllm_env.envs.routing.RequestRoutingEnv` (a mixin: it relies on
    the env's episode state, ``sim``, ``request``, ``_cands``, ``_starts``, ...)."""

    # -- spaces ------------------------------------------------------------------------------------
    def _build_spaces(self) -> None:
        from gymnasium import spaces

        S, K, T = self.config["max_servers"], self.config["K"], self.config["max_time_s"]
        feats = [
            Feature("server_mask", S, 0, 1, "1/0", "1 for a real server, 0 for padding"),
            Feature("server_start_frac", S, 0, 1, "fraction of L", "first hosted block a_j / L"),
            Feature("server_count_frac", S, 0, 1, "fraction of L", "hosted blocks m_j / L"),
            Feature("server_tau_decode_s", S, 0, 10, "s", "decode time per block per token τ_j"),
            Feature("server_rtt_s", S, 0, 10, "s", "RTT between the request's client and server j"),
            Feature("server_free_frac", S, 0, 1, "fraction", "KV bytes free now / KV capacity (0 if none)"),
            Feature("server_next_release_s", S, 0, T, "s",
                    "time until the next committed session on j completes (0 if none)"),
            Feature("cand_mask", K, 0, 1, "1/0", "1 for a valid candidate chain"),
            Feature("cand_static_s", K, 0, T, "s",
                    "static cost Σ[t^I + (l−1)t] + [τ^I + (l−1)τ]·m_ij of the chain (candidates sorted by it)"),
            Feature("cand_wait_s", K, 0, T, "s",
                    "waiting time start − now the request would get on the chain now (max_time_s if never)"),
            Feature("cand_fits", K, 0, 1, "1/0", "1 if the request's KV cache can ever fit on the chain"),
            Feature("cand_hops", K, 0, S, "servers", "number of servers on the chain"),
            Feature("cand_blocks_frac", K * S, 0, 1, "fraction of L",
                    "row-major K×S: blocks m_ij server j processes on candidate k, / L"),
            Feature("request_tokens", 2, 0, self.config["max_tokens"], "tokens",
                    "prompt and output tokens of the request"),
            Feature("progress", 1, 0, 1, "fraction", "requests already routed / requests of the episode"),
        ]
        if self.config["load_features"]:
            feats += load_layout(S, K, T)
        if self.config["defer_s"] is not None:
            feats += [
                Feature("request_defers_frac", 1, 0, 1, "fraction", "times this request was deferred / max_defers"),
                Feature("request_age_s", 1, 0, T, "s", "now − the request's arrival (its waiting so far)"),
            ]
        self.layout = ObsLayout(feats)
        self.observation_space = self.layout.space()
        self.defer_action = K if self.config["defer_s"] is not None else None
        self.action_space = spaces.Discrete(K + (self.defer_action is not None))

    # -- masks and observations --------------------------------------------------------------------
    def _current_mask(self) -> np.ndarray:
        mask = np.zeros(self.config["K"], dtype=bool)
        if self.request is None:
            if self.defer_action is not None:
                mask = np.zeros(self.action_space.n, dtype=bool)
            mask[0] = True          # terminal state: a dummy valid action, so the mask is never empty
            return mask
        fits = np.array([s is not None for s in self._starts], dtype=bool)
        if self.config["mask_unfit"] and fits.any():
            mask[: len(fits)] = fits
        else:
            mask[: len(fits)] = True
        if self.defer_action is not None:
            out = np.zeros(self.action_space.n, dtype=bool)
            out[: mask.size] = mask
            out[self.defer_action] = self._defers.get(self.request.id, 0) < self.config["max_defers"]
            return out
        return mask

    def _observation(self) -> dict[str, np.ndarray]:
        obs = self.layout.zeros()
        N, now, T = self.instance.num_servers, self.sim.now_s, self.config["max_time_s"]
        obs["server_mask"][:] = self._server_mask
        obs["server_start_frac"][:] = self._start_frac
        obs["server_count_frac"][:] = self._count_frac
        obs["server_tau_decode_s"][:] = self._tau
        free_bytes, cap = self.sim.book.free_bytes, self._cap_list
        free_f = [0.0] * N
        nxt_s = [0.0] * N
        heappop = heapq.heappop
        for j, heap in enumerate(self._releases):
            if cap[j] > 0:
                free_f[j] = free_bytes(j, now) / cap[j]
            while heap and heap[0] <= now:
                heappop(heap)
            if heap:
                nxt_s[j] = heap[0] - now
        obs["server_free_frac"][:N] = free_f
        obs["server_next_release_s"][:N] = nxt_s
        obs["progress"][0] = self._routed / max(self._num_requests, 1)
        req = self.request
        if req is not None:
            obs["server_rtt_s"][:N] = self.instance.rtt_s[req.client]
            c = self._cands
            n = len(c.routes)
            obs["cand_mask"][:n] = 1
            obs["cand_static_s"][:n] = c.static_s
            obs["cand_wait_s"][:n] = [T if s is None else s - now for s in self._starts]
            obs["cand_fits"][:n] = [s is not None for s in self._starts]
            obs["cand_hops"][:n] = c.num_hops
            obs["cand_blocks_frac"][:] = c.blocks_frac
            obs["request_tokens"][:] = (req.prompt_tokens, req.output_tokens)
            if self.config["load_features"]:
                self._load_observation(obs, req, np.asarray(free_f))
            if self.defer_action is not None:
                obs["request_defers_frac"][0] = self._defers.get(req.id, 0) / self.config["max_defers"]
                obs["request_age_s"][0] = now - req.arrival_s
        return self.layout.finish(obs)

    def _reset_info(self) -> dict:
        return {"placement": self.placement_name, "num_requests": self._num_requests}

    # -- helpers for env policies ------------------------------------------------------------------
    @property
    def candidate_routes(self) -> list[Route]:
        return [] if self._cands is None else list(self._cands.routes)

    def candidate_index(self, route: Route | None) -> int | None:
        """Index of ``route`` among the current candidates (``None`` if it is not one)."""
        if route is None or self._cands is None:
            return None
        return self._cands.index.get(route.hops)

    def expected_per_token_s(self) -> np.ndarray:
        """Per candidate, the per-token time the request would get: (start + hold − arrival)/l_out
        (``inf`` for a chain it never fits)."""
        if self._cands is None:
            return np.zeros(0)
        req, c = self.request, self._cands
        return np.array([math.inf if s is None else (s + c.hold_s[k] - req.arrival_s) / req.output_tokens
                         for k, s in enumerate(self._starts)])

    def greedy_action(self) -> int:
        """The valid candidate with the least expected per-token time (lowest index on ties)."""
        est = self.expected_per_token_s()
        if est.size == 0:
            return 0
        est = np.where(self._mask[: est.size], est, np.inf)
        return int(np.argmin(est)) if np.isfinite(est).any() else int(np.argmax(self._mask))

    # -- rendering ---------------------------------------------------------------------------------
    def _render_text(self) -> str:
        sim, inst = self.sim, self.instance
        lines = [f"RequestRouting  scenario={self.scenario.name} seed={self.scenario_seed} "
                 f"placement={self.placement_name}  t={sim.now_s:.2f}s  routed {self._routed}/{self._num_requests}"]
        req = self.request
        if req is None:
            lines.append("episode finished")
        else:
            lines.append(f"request {req.id}: client {req.client}, {req.prompt_tokens}+{req.output_tokens} tokens")
            est = self.expected_per_token_s()
            for k, r in enumerate(self._cands.routes):
                s = self._starts[k]
                wait = "never" if s is None else f"{s - sim.now_s:8.2f}s"
                flag = " " if self._mask[k] else "x"
                lines.append(f" {flag}[{k}] static {self._cands.static_s[k]:8.2f}s  wait {wait}  "
                             f"→ {est[k]:.3f} s/token  {r.to_text()}")
        pl = self.placement_result.placement
        for j in range(inst.num_servers):
            cap = self._capacity[j]
            frac = 1 - sim.book.free_bytes(j, sim.now_s) / cap if cap > 0 else 0.0
            span = f"{pl.starts[j]:3d}-{pl.starts[j] + pl.counts[j] - 1:3d}" if pl.counts[j] else "   none"
            lines.append(f"  s{j:<3d} {inst.servers[j].gpu.name:<14s} blocks {span}  KV {bar(frac)} {frac:5.1%}")
        return "\n".join(lines)

    def _render_rgb(self) -> np.ndarray:
        inst, sim = self.instance, self.sim
        pl = self.placement_result.placement
        load = [1 - sim.book.free_bytes(j, sim.now_s) / c if c > 0 else 0.0 for j, c in enumerate(self._capacity)]
        hl = self._last_route.servers if self._last_route is not None else ()
        title = (f"{self.scenario.name} seed {self.scenario_seed}: t={sim.now_s:.1f}s, "
                 f"{self._routed}/{self._num_requests} routed (last chain highlighted)")
        return coverage_load_rgb(inst.num_blocks, pl.starts, pl.counts, load, title, highlight=hl)


__all__ = ["RoutingObservationMixin"]

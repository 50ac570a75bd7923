"""``distllm/BlockPlacement-v0``: choose each server's contiguous block range, one server per step.

Servers are visited in ``config["server_order"]``:

* ``tilde_t`` (default): increasing amortised per-block time t̃_j = τ_j + max_c t_cj / m̄_j, CG-BP's
  order (docs/model.md §6, step 2.1), with m̄_j the server's largest
  valid count below (servers that can host nothing go last);
* ``random``: a permutation drawn from the env's own stream of the scenario seed;
* ``given``: the scenario's server order.

Action: ``Discrete(1 + B(B+1)/2)`` with B = ``config["max_blocks"]``: action 0 hosts nothing, the
others enumerate every (start, count) span, count ascending then start ascending
(:func:`encode_span` / :func:`decode_span`).  A span is valid for server j when
start + count ≤ L and count ≤ m̄_j = min(⌊M_j / (s_m + s_c)⌋, L, GPU cap) — what fits in memory
together with one session's KV cache at the scenario's maximum lengths (docs/contracts.md §9;
:func:`distllm_env.perf.conservative_block_count` with one session) — **and** the blocks left
uncovered can still be covered by the servers still to come, judged by the necessary condition

    Σ_{later servers} m̄  ≥  hull(U) − (sum of the r − 1 largest covered gaps inside U)

where U is the set of still-uncovered blocks after the span, hull(U) the length from its first to
its last block and r the number of later servers (r intervals can skip at most r − 1 covered runs).
The condition is exact for the last server (r = 0 ⇒ U must be empty; r = 1 ⇒ one interval must span
U), so every finished placement covers the model.  Deciding coverage exactly for r ≥ 2 is
NP-hard (it contains bin covering), so a dead end remains possible; when no action of the next
server satisfies the condition, the episode terminates early with ``config["uncovered_penalty"]``.

After the last server the workload of the scenario seed is simulated on the placement with
``config["router"]`` (default :func:`distllm_env.registry.default_routing`, i.e. WS-RR) and
``config["cache_policy"]`` (default ``leftover``).  Reward: 0 on intermediate steps; at the end
−Σ_r (completion − arrival) / Σ_r output_tokens over all requests, a rejected request counting
``config["rejection_penalty"]`` seconds per token (equal to −mean_per_token_time_s when nothing is
rejected); with ``config["reward_baseline"]`` = a placement name, that value divided by the
baseline placement's (same seed, router and cache policy), i.e. −(mine / baseline).

Load features (λ, mean lengths, CG-BP's T₁ and rule |R|, planned per-block utilisation), the per-episode
λ of ``config["arrival_rate_per_s"]`` and the one-step ``config["action"] = "sessions"`` mode (choose
CG-BP's |R| from ``config["sessions_grid"]``: a learned parameterisation of CG-BP) live in
:mod:`distllm_env.envs.placement_load` (docs/envs.md, BlockPlacement).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

from ..api import place, run_routing
from ..errors import PlacementError
from ..metrics import summarize
from ..perf import conservative_block_count
from ..placement import CachePolicy, Placement, PlacementResult
from ..registry import resolve_routing
from ..simulator import new_simulation
from .base import COMMON_CONFIG, DistLLMEnv, _choice, _float_at_least, _policy_spec
from .placement_load import (_MAX_SESSIONS, DEFAULT_SESSIONS_GRID, UTILISATION_MAX, EpisodeLoad, LoadAndSessionsMixin,
                             arrival_rate_option, block_utilisation, episode_load, sessions_grid_option)
from .render import bar, coverage_load_rgb
from .routing import _cache_policy
from .spaces import Feature, ObsLayout
from .spans import _model_spans, coverage_ok, decode_span, encode_span, num_span_actions, span_tables


# --------------------------------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------------------------------

def _router_spec(key: str, value: Any) -> Any:
    return _policy_spec(key, value)


PLACEMENT_CONFIG = dict(COMMON_CONFIG) | {
    "server_order": ("tilde_t", _choice("tilde_t", "random", "given"), "order in which servers are decided"),
    "router": (None, _router_spec, "router of the end-of-episode simulation: a routing name, 'module:Class' or "
                                   "object; None = distllm_env.registry.default_routing(scenario) (WS-RR)"),
    "cache_policy": ("leftover", _cache_policy, "'leftover' or 'fixed_pool(T)' for the simulated placement"),
    "rejection_penalty": (10.0, _float_at_least(0.0), "per-token time (s) charged for a rejected request"),
    "uncovered_penalty": (100.0, _float_at_least(0.0), "reward −uncovered_penalty when the episode reaches a state "
                                                       "from which the model can no longer be covered"),
    "reward_baseline": (None, _policy_spec, "None, or a placement whose per-token time normalises the reward "
                                            "(reward = −mine/baseline)"),
    "action": ("ranges", _choice("ranges", "sessions"), "'ranges': one (start, count) span per server and step; "
                                                        "'sessions': one step choosing CG-BP's |R| from sessions_grid"),
    "sessions_grid": (list(DEFAULT_SESSIONS_GRID), sessions_grid_option, "candidate |R| values of action='sessions' "
                                                                   "(strictly increasing integers ≥ 1)"),
    "arrival_rate_per_s": (None, arrival_rate_option, "None: the scenario's workload.arrival_rate_per_s; a number; "
                                                      "or [lo, hi]: λ drawn per episode (arrival_rate_draw)"),
    "arrival_rate_draw": ("log-uniform", _choice("log-uniform", "uniform"),
                          "distribution of λ in [lo, hi] when arrival_rate_per_s is a range"),
}


class BlockPlacementEnv(LoadAndSessionsMixin, DistLLMEnv):
    """Choose every server's block range, one server per step (docs/envs.md)."""

    decision_name = "BlockPlacement"
    default_scenario = "paper-clustered"
    CONFIG = PLACEMENT_CONFIG

    def _build_spaces(self) -> None:
        from gymnasium import spaces

        S, B = self.config["max_servers"], self.config["max_blocks"]
        server = [
            Feature("server_mask", S, 0, 1, "1/0", "1 for a real server, 0 for padding"),
            Feature("server_cap_frac", S, 0, 1, "fraction of L", "largest valid count m̄_j / L"),
            Feature("server_tau_decode_s", S, 0, 10, "s", "decode time per block per token τ_j"),
            Feature("server_tau_prefill_s", S, 0, 10, "s", "prefill time per block τ^I_j at the maximum prompt"),
            Feature("server_rtt_s", S, 0, 10, "s", "client-weighted mean RTT from the clients to server j"),
        ]
        if self.sessions_mode:
            G = len(self.config["sessions_grid"])
            self.layout = ObsLayout(server + self._load_features(S) + [
                Feature("sessions_grid_rel", G, 0, _MAX_SESSIONS, "ratio", "each action's session target R / "
                                                                           "rule_sessions (0 when rule_sessions is 0)"),
            ])
            self.observation_space = self.layout.space()
            self.action_space = spaces.Discrete(G)
            return
        self.layout = ObsLayout(server + [
            Feature("server_order_frac", S, 0, 1, "fraction", "position of server j in the decision order / N"),
            Feature("server_decided", S, 0, 1, "1/0", "1 once server j's range is chosen"),
            Feature("server_start_frac", S, 0, 1, "fraction of L", "chosen first block a_j / L (0 if undecided)"),
            Feature("server_count_frac", S, 0, 1, "fraction of L", "chosen count m_j / L (0 if undecided)"),
            Feature("current_server", S, 0, 1, "one-hot", "the server decided at this step"),
            Feature("block_mask", B, 0, 1, "1/0", "1 for a real block (b < L)"),
            Feature("block_coverage", B, 0, S, "servers", "number of decided servers hosting block b"),
            Feature("later_cap_frac", 1, 0, S, "fraction of L", "Σ m̄ of the servers after the current one / L"),
            Feature("progress", 1, 0, 1, "fraction", "servers decided / N"),
        ] + self._load_features(S) + [
            Feature("block_utilisation", B, 0, UTILISATION_MAX, "ratio", "planned utilisation of block b: "
                    "offered_sessions / Σ κ_j over the decided servers j hosting b, κ_j = ⌊(M_j − s_m·m_j)/(s_c·m_j)⌋ "
                    f"(CG-BP's κ); {UTILISATION_MAX:g} where no decided server hosts b"),
        ])
        self.observation_space = self.layout.space()
        self.action_space = spaces.Discrete(num_span_actions(B))

    # -- helpers -------------------------------------------------------------------------------------
    def encode_action(self, start: int, count: int) -> int:
        return encode_span(start, count, self.config["max_blocks"])

    def decode_action(self, action: int) -> tuple[int, int]:
        return decode_span(action, self.config["max_blocks"])

    @property
    def current_server(self) -> int | None:
        """The server decided at this step (``None`` once every server is decided)."""
        return int(self.order[self._pos]) if self._pos < len(self.order) else None

    # -- episode -------------------------------------------------------------------------------------
    def _start_episode(self, seed: int) -> None:
        inst, reqs = self._episode_data(seed)
        self.instance, self.requests = inst, reqs
        self.episode_scenario = inst.scenario
        self.load: EpisodeLoad = episode_load(inst, reqs)
        self.placement_rng, self.routing_rng, self.env_rng = self.policy_streams(seed)
        N, L = inst.num_servers, inst.num_blocks
        self.caps = conservative_block_count(inst.memory_bytes, inst.block_bytes, inst.kv_block_bytes, 1, L,
                                             inst.max_blocks).astype(np.int64)
        if int(self.caps.sum()) < L:
            raise PlacementError(f"scenario {self.scenario.name!r} (seed {seed}): the servers can host at most "
                                 f"{int(self.caps.sum())} blocks with one session each, fewer than the model's {L}")
        order_rule = self.config["server_order"]
        worst_t = inst.token_cost_s.max(axis=0)
        with np.errstate(divide="ignore"):
            self.t_tilde = np.where(self.caps > 0, inst.tau_decode_s + worst_t / np.maximum(self.caps, 1), np.inf)
        if order_rule == "tilde_t":
            self.order = np.argsort(self.t_tilde, kind="stable")
        elif order_rule == "random":
            self.order = self.env_rng.permutation(N)
        else:
            self.order = np.arange(N)
        self.order_pos = np.empty(N, dtype=np.int64)
        self.order_pos[self.order] = np.arange(N)
        self._later_caps = np.concatenate([np.cumsum(self.caps[self.order][::-1])[::-1][1:], [0]])
        self.starts = np.zeros(N, dtype=np.int64)
        self.counts = np.zeros(N, dtype=np.int64)
        self.uncovered = np.ones(L, dtype=bool)
        self.coverage = np.zeros(L, dtype=np.int64)
        self._pos = 0
        self.result = None
        self.records = None
        self.summary = None
        self.dead_end = False
        self._spans, self._outside = _model_spans(L, self.config["max_blocks"])
        self._static_obs = self._static_features()
        if self.sessions_mode:
            self._grid_ok = self._feasible_grid(seed)

    def _static_features(self) -> dict[str, np.ndarray]:
        inst = self.instance
        S, N, L = self.config["max_servers"], inst.num_servers, inst.num_blocks
        out = {k: np.zeros(S, dtype=np.float32) for k in ("server_mask", "server_cap_frac", "server_tau_decode_s",
                                                          "server_tau_prefill_s", "server_rtt_s", "server_order_frac")}
        out["server_mask"][:N] = 1
        out["server_cap_frac"][:N] = self.caps / L
        out["server_tau_decode_s"][:N] = inst.tau_decode_s
        out["server_tau_prefill_s"][:N] = inst.tau_prefill_s(self.scenario.max_prompt_tokens)
        w = np.array([c.weight for c in inst.clients], dtype=float)
        out["server_rtt_s"][:N] = (w[:, None] * inst.rtt_s).sum(axis=0) / w.sum()
        if not self.sessions_mode:
            out["server_order_frac"][:N] = self.order_pos / N
        else:
            del out["server_order_frac"]
        ld = self.load
        for k, v in (("arrival_rate_per_s", ld.arrival_rate_per_s), ("mean_prompt_tokens", ld.mean_prompt_tokens),
                     ("mean_output_tokens", ld.mean_output_tokens), ("lone_request_time_s", ld.t1_s),
                     ("offered_sessions", ld.offered_sessions), ("rule_sessions", ld.rule_sessions)):
            out[k] = np.array([v], dtype=np.float32)
        if self.sessions_mode and ld.rule_sessions > 0:
            out["sessions_grid_rel"] = np.asarray(self.config["sessions_grid"], dtype=np.float32) / ld.rule_sessions
        return out

    def _valid_spans(self) -> np.ndarray:
        """Action indices valid for the current server (ascending; never empty unless a dead end)."""
        cached = self.__dict__.get("_valid_cache")
        if cached is not None and cached[0] == (self.episode_index, self._pos):
            return cached[1]
        spans = self._compute_valid_spans()
        self._valid_cache = ((self.episode_index, self._pos), spans)
        return spans

    def _compute_valid_spans(self) -> np.ndarray:
        j = self.current_server
        L = self.instance.num_blocks
        cap = int(self.caps[j])
        n = 1 + cap * L - cap * (cap - 1) // 2          # spans with count ≤ cap (a prefix of the L-valid spans)
        cand = self._spans[:n]
        later = self.caps[self.order[self._pos + 1:]]
        U = self.uncovered
        if not U.any():
            return cand
        if len(later) and int(later.max()) >= L:      # one later server can host the whole model
            return cand
        # the valid spans are a pure function of (U, m̄_j, later m̄): memoise (episodes of one scenario
        # start from the same states again and again)
        memo = self.__dict__.setdefault("_span_memo", OrderedDict())
        mkey = (U.tobytes(), cap, np.sort(later).tobytes(), len(later))
        hit = memo.get(mkey)
        if hit is not None:
            memo.move_to_end(mkey)
            return hit
        out = self._coverage_filter(cand, U, later)
        memo[mkey] = out
        if len(memo) > 512:
            memo.popitem(last=False)
        return out

    def _coverage_filter(self, cand: np.ndarray, U: np.ndarray, later: np.ndarray) -> np.ndarray:
        L = len(U)
        # a span changes U only through the uncovered blocks it contains, i.e. through (lo, hi) = its
        # first and last uncovered block: evaluate the condition once per distinct (lo, hi)
        b = np.arange(L + 1)
        unc = np.flatnonzero(U)
        next_unc = np.full(L + 1, L)
        next_unc[: unc[-1] + 1] = unc[np.searchsorted(unc, b[: unc[-1] + 1])]
        prev_unc = np.full(L + 1, -1)
        after = b > unc[0]
        prev_unc[after] = unc[np.searchsorted(unc, b[after]) - 1]
        starts, counts = span_tables(self.config["max_blocks"])
        s, e = starts[cand], starts[cand] + counts[cand]
        lo, hi = next_unc[s], prev_unc[e]
        key = np.where(lo <= hi, lo * (L + 1) + hi, -1)
        uniq, inv = np.unique(key, return_inverse=True)
        ulo, uhi = np.where(uniq >= 0, uniq // (L + 1), L), np.where(uniq >= 0, uniq % (L + 1), -1)
        blocks = np.arange(L)
        rows = U[None, :] & ~((blocks[None, :] >= ulo[:, None]) & (blocks[None, :] <= uhi[:, None]))
        ok = coverage_ok(rows, later)[inv.reshape(-1)]
        return cand[ok]

    def _apply(self, action: int) -> tuple[float, bool, dict]:
        if self.sessions_mode:
            return self._apply_sessions(action)
        j = self.current_server
        start, count = self.decode_action(action)
        self.starts[j], self.counts[j] = start, count
        if count:
            self.uncovered[start:start + count] = False
            self.coverage[start:start + count] += 1
        self._pos += 1
        info: dict[str, Any] = {"server": j, "start": start, "count": count}
        if self._pos < len(self.order):
            if self._valid_spans().size == 0:
                self.dead_end = True
                pen = self.config["uncovered_penalty"]
                uncovered = Placement(tuple(int(s) for s in self.starts), tuple(int(c) for c in self.counts),
                                      self.instance.num_blocks).uncovered_ranges()
                info["uncovered_blocks"] = int(self.uncovered.sum())
                info["uncovered_ranges"] = [list(r) for r in uncovered]
                info["reward_components"] = {"per_token_time": 0.0, "uncovered": -pen}
                return -pen, True, info
            info["reward_components"] = {"per_token_time": 0.0, "uncovered": 0.0}
            return 0.0, False, info
        reward, summary = self._finish()
        info["summary"] = summary
        info["reward_components"] = {"per_token_time": reward, "uncovered": 0.0}
        return reward, True, info

    def _simulate(self, presult: PlacementResult, routing_rng: np.random.Generator) -> tuple[list, dict, float]:
        """Simulate the seed's workload on ``presult`` exactly as :func:`distllm_env.simulate` does
        (same requests, routing rng and reservation rules); returns (records, summary, reward)."""
        sc = self.episode_scenario
        router_spec = self.config["router"]
        router = resolve_routing(router_spec, sc, allow_imports=self.config["allow_imports"], field="config.router")
        sim = new_simulation(self.instance, presult, self.requests, reservation=sc.simulator.reservation,
                         backoff=sc.simulator.backoff, allocation_delay_s=self.allocation_delay_s())
        run_routing(sim, router, routing_rng)
        records = sim.finished_records()
        summary = summarize(records, sim.capacity_bytes)
        pen = self.config["rejection_penalty"]
        total = sum((r.completion_s - r.arrival_s) if r.completed else pen * r.output_tokens for r in records)
        tokens = sum(r.output_tokens for r in records)
        return records, summary, total / max(tokens, 1)

    def _finish(self, diagnostics: dict | None = None) -> tuple[float, dict]:
        inst = self.instance
        placement = Placement(tuple(int(s) for s in self.starts), tuple(int(c) for c in self.counts), inst.num_blocks)
        self.result = PlacementResult(placement, CachePolicy.parse(self.config["cache_policy"]),
                                      diagnostics if diagnostics is not None else {"order": [int(j) for j in self.order]})
        self.records, self.summary, per_token = self._simulate(self.result, self.routing_rng)
        reward = -per_token
        out = {"per_token_time_s": per_token,
               **{k: self.summary[k] for k in ("mean_per_token_time_s", "ttft_p50_s", "ttft_p95_s", "wait_mean_s",
                                               "num_completed", "num_rejected")}}
        base_spec = self.config["reward_baseline"]
        if base_spec is not None:
            placement_rng, routing_rng, _ = self.policy_streams(self.scenario_seed)
            base_result, _, _ = place(inst, base_spec, placement_rng, self.episode_scenario,
                                      field="config.reward_baseline")
            base_result = PlacementResult(base_result.placement, self.result.cache_policy, base_result.diagnostics)
            _, _, base_per_token = self._simulate(base_result, routing_rng)
            out["baseline_per_token_time_s"] = base_per_token
            reward = -per_token / base_per_token if base_per_token > 0 else -math.inf
        return reward, out

    # -- masks and observations ----------------------------------------------------------------------
    def _current_mask(self) -> np.ndarray:
        mask = np.zeros(self.action_space.n, dtype=bool)
        if self._done or self.current_server is None:
            mask[0] = True      # terminal state: a dummy valid action, so the mask is never empty
            return mask
        if self.sessions_mode:
            return self._grid_ok.copy()
        mask[self._valid_spans()] = True
        return mask

    def _observation(self) -> dict[str, np.ndarray]:
        obs = self.layout.zeros()
        for k, v in self._static_obs.items():
            obs[k][:v.size] = v
        if self.sessions_mode:
            return self.layout.finish(obs)
        inst = self.instance
        N, L = inst.num_servers, inst.num_blocks
        decided = self.order_pos < self._pos
        obs["server_decided"][:N] = decided
        obs["server_start_frac"][:N] = np.where(decided & (self.counts > 0), self.starts, 0) / L
        obs["server_count_frac"][:N] = self.counts / L
        j = self.current_server
        if j is not None and not self._done:
            obs["current_server"][j] = 1
            obs["later_cap_frac"][0] = self._later_caps[self._pos] / L
        obs["block_mask"][:L] = 1
        obs["block_coverage"][:L] = self.coverage
        obs["progress"][0] = self._pos / N
        obs["block_utilisation"][:L] = block_utilisation(self.load.offered_sessions, self.starts, self.counts, decided,
                                                         inst.memory_bytes, int(inst.block_bytes),
                                                         int(inst.kv_block_bytes), L)
        return self.layout.finish(obs)

    def _reset_info(self) -> dict:
        info = {"server": self.current_server, "order": [int(j) for j in self.order],
                "arrival_rate_per_s": self.load.arrival_rate_per_s, "rule_sessions": self.load.rule_sessions}
        if self.sessions_mode:
            info["server"] = None
            info["sessions_grid"] = list(self.config["sessions_grid"])
        return info

    # -- rendering -----------------------------------------------------------------------------------
    def _render_text(self) -> str:
        inst = self.instance
        L = inst.num_blocks
        lines = [f"BlockPlacement  scenario={self.scenario.name} seed={self.scenario_seed} "
                 f"order={self.config['server_order']}  decided {self._pos}/{inst.num_servers}"]
        for j in self.order:
            mark = ">" if j == self.current_server and not self._done else " "
            if self.order_pos[j] < self._pos:
                c = int(self.counts[j])
                span = f"{self.starts[j]:3d}-{self.starts[j] + c - 1:3d}" if c else "   none"
            else:
                span = "  (open)"
            lines.append(f"{mark} s{j:<3d} {inst.servers[j].gpu.name:<14s} m̄={int(self.caps[j]):3d} "
                         f"t̃={self.t_tilde[j]:.4f}s  blocks {span}")
        cov = "".join("#" if c > 1 else ("+" if c == 1 else ".") for c in self.coverage)
        lines.append(f"coverage [{cov}]  ({int(self.uncovered.sum())}/{L} uncovered)")
        if self.summary is not None:
            lines.append(f"simulated: mean per-token time {self.summary['mean_per_token_time_s']:.4f} s, "
                         f"{self.summary['num_rejected']} rejected")
        elif not self._done:
            lines.append(f"valid actions: {int(self._mask.sum())}")
        lines.append("weights " + " ".join(f"s{j}:{bar(self.counts[j] / max(self.caps[j], 1), 6)}"
                                           for j in range(inst.num_servers)))
        return "\n".join(lines)

    def _render_rgb(self) -> np.ndarray:
        inst = self.instance
        decided = self.order_pos < self._pos
        if self.summary is not None:
            load = self.summary["memory_utilisation"]
            what = f"mean per-token time {self.summary['mean_per_token_time_s']:.3f} s (bottom: KV load)"
        else:
            load = [self.counts[j] / self.caps[j] if self.caps[j] else 0.0 for j in range(inst.num_servers)]
            what = f"{self._pos}/{inst.num_servers} decided (bottom: blocks / m̄)"
        hl = () if self.current_server is None or self._done else (self.current_server,)
        return coverage_load_rgb(inst.num_blocks, self.starts, self.counts, load,
                                 f"{self.scenario.name} seed {self.scenario_seed}: {what}", highlight=hl,
                                 decided=decided)


__all__ = ["BlockPlacementEnv", "PLACEMENT_CONFIG", "coverage_ok", "decode_span", "encode_span",
           "num_span_actions", "span_tables"]

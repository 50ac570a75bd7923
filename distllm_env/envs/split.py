"""``distllm/ClientSplit-v0``: decide which layers of each request the client runs (SplitLLM).

The SplitLLM single-server setting of a scenario's ``split:`` section (arXiv 2410.10759; docs/model.md
§10; :class:`distllm_env.split.setting.SplitSetting`): one server, clients with
devices, a stream of requests of mixed layer models and lengths, each with its own SLA.  The
requests of an episode are exactly those :func:`distllm_env.split.evaluate.evaluate_split` draws for
the same scenario seed (children 3 of the ``workload`` stream), so a split policy through the env
can be compared with ``evaluate_split`` request by request.

Two modes (``config["mode"]``):

* ``per_layer`` (default, docs/contracts.md §9): one step per layer l of the current request, action
  ``Discrete(2)`` — 0 = server, 1 = client.  The mask comes from the DP's feasibility table
  (:meth:`distllm_env.baselines.splitllm.SplitTables.action_mask`): location b is valid for layer l
  iff, with the δ-rounded time already used, the rest of the request can still finish within the
  SLA budget J = ⌊SLA/δ⌋ — so every finished request meets its SLA.  Reward of a step = w_l / W_so if
  layer l runs on the client (the server work it saves, as a fraction of the request's server-only
  work W_so), else 0; a request's rewards sum to 1 − W(x)/W_so.
* ``per_request``: one step per request, action ``Discrete(B + 1)`` = the number c of leading layers
  the client runs (a client prefix; the rest on the server).  Valid iff c ≤ L and the prefix meets
  the SLA on continuous times (T(x) ≤ SLA).  Reward = 1 − W(x)/W_so.

A request whose SLA no placement can meet (not even server-only) leaves only the server action
valid (the server-only fallback of the baselines); ``info["sla_infeasible"]`` says so.  The episode
terminates after ``config["num_requests"]`` requests (default: the scenario's
``split.num_requests``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import ScenarioError
from ..rng import generators, seed_streams
from .base import COMMON_CONFIG, DistLLMEnv, _choice, _int_at_least, _optional
from .render import bar
from .spaces import Feature, ObsLayout

SERVER, CLIENT = 0, 1

SPLIT_CONFIG = {k: COMMON_CONFIG[k] for k in ("max_blocks", "invalid_action_penalty", "max_time_s",
                                             "allow_imports")} | {
    "mode": ("per_layer", _choice("per_layer", "per_request"), "one step per layer (action server/client) or per "
                                                               "request (action = client prefix length)"),
    "num_requests": (None, _optional(_int_at_least(1)), "requests per episode; None = the scenario's "
                                                        "split.num_requests"),
    "max_tokens": (65536, _int_at_least(1), "upper clip of the token-count features"),
}
_RATIO_MAX = 10.0      # time features are divided by the request's SLA and clipped to [0, 10]


class ClientSplitEnv(DistLLMEnv):
    """Split each request's layers between client and server under its SLA (docs/envs.md)."""

    decision_name = "ClientSplit"
    default_scenario = "splitllm-edge"
    CONFIG = SPLIT_CONFIG

    def _check_scenario(self, scenario) -> None:
        from ..split.models import get_layer_model

        if scenario.split is None:
            raise ScenarioError("split", f"scenario {scenario.name!r} has no 'split:' section; ClientSplit needs "
                                         "one (e.g. the splitllm-* presets)")
        B = self.config["max_blocks"]
        for i, r in enumerate(scenario.split.requests):
            L = get_layer_model(r.model, scenario.catalog, f"split.requests.{i}.model").num_layers
            if L > B:
                raise ScenarioError("config.max_blocks", f"split.requests.{i} ({r.model}) has {L} layers but the env "
                                                         f"pads to max_blocks={B}")

    def _check_instance(self, inst) -> None:
        return None

    # -- spaces ----------------------------------------------------------------------------------
    def _build_spaces(self) -> None:
        from gymnasium import spaces

        B, R = self.config["max_blocks"], _RATIO_MAX
        common = [
            Feature("layer_mask", B, 0, 1, "1/0", "1 for a layer of the current request"),
            Feature("layer_work_frac", B, 0, 1, "fraction", "server work w_l / W_so (server-only work)"),
            Feature("layer_client_time", B, 0, R, "× SLA", "client time t^c_l / SLA (10 if the client cannot run it)"),
            Feature("layer_server_time", B, 0, R, "× SLA", "server time t^s_l / SLA"),
            Feature("boundary_up_time", B + 1, 0, R, "× SLA", "upload time u_b before layer b (b = L: unused) / SLA"),
            Feature("boundary_down_time", B + 1, 0, R, "× SLA", "download time v_b before layer b (b = L: the "
                                                                 "output) / SLA"),
            Feature("sla_s", 1, 0, self.config["max_time_s"], "s", "the request's SLA"),
            Feature("request_tokens", 2, 0, self.config["max_tokens"], "tokens", "prompt and output tokens"),
            Feature("progress", 1, 0, 1, "fraction", "requests finished / requests of the episode"),
        ]
        if self.config["mode"] == "per_layer":
            extra = [
                Feature("layer_decided", B, 0, 1, "1/0", "1 for a layer already placed"),
                Feature("layer_on_client", B, 0, 1, "1/0", "1 for a layer placed on the client"),
                Feature("current_layer", B, 0, 1, "one-hot", "the layer decided at this step"),
                Feature("prev_on_client", 1, 0, 1, "1/0", "1 if the previous layer (or the input) is on the client"),
                Feature("budget_used", 1, 0, 1, "fraction of J", "δ-rounded time used so far / J"),
                Feature("min_budget_needed", 2, 0, 2, "fraction of J",
                        "for server / client at this layer: used + the least rounded time to finish, / J"),
            ]
            n_actions = 2
        else:
            extra = [
                Feature("prefix_latency", B + 1, 0, R, "× SLA", "latency T(x) of the client prefix of c layers / SLA"),
                Feature("prefix_saving", B + 1, 0, 1, "fraction", "server work saved by the prefix of c layers, "
                                                                  "1 − W/W_so"),
            ]
            n_actions = B + 1
        self.layout = ObsLayout(common + extra)
        self.observation_space = self.layout.space()
        self.action_space = spaces.Discrete(n_actions)

    # -- episode ---------------------------------------------------------------------------------
    def _start_episode(self, seed: int) -> None:
        from ..split.setting import SplitSetting

        cache = self.__dict__.setdefault("_setting_cache", OrderedDict())
        hit = cache.get(seed)
        if hit is None:
            inst, _ = self._episode_data(seed)
            setting = SplitSetting.from_instance(inst)
            # the requests evaluate_split draws: child 3 of the workload stream (0-2 are the geo workload's)
            req_rng = generators(seed_streams(seed)["workload"], 5)[3]
            requests = setting.sample_requests(req_rng, self.config["num_requests"])
            hit = cache[seed] = (setting, requests)
            while len(cache) > self._episode_cache_size:
                cache.popitem(last=False)
        self.setting, self.requests = hit
        self._tables_cache: OrderedDict = OrderedDict()
        self.plans: list[dict] = []
        self._ri = -1
        self._next_request()

    def _tables(self, req):
        from ..baselines.splitllm import dp_tables

        key = (req.model, req.client, req.prompt_tokens, req.output_tokens)
        hit = self._tables_cache.get(key)
        if hit is None:
            profile = self.setting.profile(req)
            sla = self.setting.sla_s(req, profile)
            spec = self.setting.spec
            tables = dp_tables(profile, sla, spec.delta_s, spec.budget_steps)
            hit = self._tables_cache[key] = (profile, sla, tables)
            while len(self._tables_cache) > 256:
                self._tables_cache.popitem(last=False)
        return hit

    def _next_request(self) -> None:
        self._ri += 1
        if self._ri >= len(self.requests):
            self.request = None
            return
        req = self.request = self.requests[self._ri]
        self.profile, self.sla_s, self.tables = self._tables(req)
        L = self.profile.num_layers
        if L > self.config["max_blocks"]:  # pragma: no cover - excluded by _check_scenario
            raise ScenarioError("config.max_blocks", f"request model {req.model} has {L} layers")
        self.w_so = self.profile.total_work_flops
        self.sla_infeasible = not self.tables.feasible
        self.x = np.zeros(L, dtype=np.int8)
        self.layer = 0
        self.prev = CLIENT
        self.used = 0
        if self.config["mode"] == "per_request":
            X = np.tril(np.ones((L + 1, L), dtype=np.int8), k=-1)   # row c: the first c layers on the client
            self._prefix_latency = self.profile.latencies_s(X)
            self._prefix_work = self.profile.server_work(X)

    def __getstate__(self):
        # SplitSetting memoises profiles with a per-instance lru_cache, which cannot be pickled; it is a
        # pure function of (scenario, seed), so it is dropped here and rebuilt by __setstate__
        state = self.__dict__.copy()
        state["_setting_cache"] = OrderedDict()
        if state.get("setting") is not None:
            state["setting"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "setting" in state and self.scenario_seed is not None:
            from ..split.setting import SplitSetting

            self.setting = SplitSetting.from_instance(self._episode_data(self.scenario_seed)[0])

    @property
    def request_index(self) -> int:
        return self._ri

    # -- stepping --------------------------------------------------------------------------------
    def _saving(self, work: float) -> float:
        return 1.0 - work / self.w_so if self.w_so > 0 else 0.0

    def _apply(self, action: int) -> tuple[float, bool, dict]:
        req = self.request
        info: dict[str, Any] = {"request_id": req.id, "sla_infeasible": bool(self.sla_infeasible)}
        if self.config["mode"] == "per_layer":
            k, b = self.layer, int(action)
            self.x[k] = b
            self.used += int(self.tables.step_units[k, self.prev, b])
            self.prev = b
            reward = float(self.profile.server_work_flops[k] / self.w_so) if (b == CLIENT and self.w_so > 0) else 0.0
            info["layer"] = k
            self.layer += 1
            done_request = self.layer >= self.profile.num_layers
            if done_request:
                self.used += int(self.tables.final_units[self.prev])
        else:
            c = int(action)
            self.x[:c] = CLIENT
            reward = self._saving(float(self._prefix_work[c]))
            info["layer"] = -1
            done_request = True
        info["reward_components"] = {"server_work_saved": reward}
        if done_request:
            latency = self.profile.latency_s(self.x)
            work = self.profile.server_work(self.x)
            rec = {"request_id": req.id, "x": self.x.copy(), "server_work_flops": float(work),
                   "latency_s": float(latency), "sla_s": float(self.sla_s), "saving": self._saving(float(work)),
                   "sla_infeasible": bool(self.sla_infeasible), "server_only_work_flops": float(self.w_so)}
            self.plans.append(rec)
            info.update(request_done=True, request_saving=rec["saving"], request_latency_s=rec["latency_s"],
                        request_meets_sla=bool(latency <= self.sla_s * (1 + 1e-9)))
            self._next_request()
        else:
            info["request_done"] = False
        terminated = self.request is None
        if terminated:
            info["summary"] = self.episode_summary()
        return reward, terminated, info

    def episode_summary(self) -> dict:
        """Mean server-work reduction (per request and work-weighted) and SLA misses of the episode."""
        if not self.plans:
            return {"server_work_reduction_mean": 0.0, "server_work_reduction_total": 0.0, "sla_misses": 0}
        base = np.array([p["server_only_work_flops"] for p in self.plans])
        work = np.array([p["server_work_flops"] for p in self.plans])
        misses = sum(1 for p in self.plans if not p["sla_infeasible"] and p["latency_s"] > p["sla_s"] * (1 + 1e-9))
        return {"server_work_reduction_mean": float(np.mean([p["saving"] for p in self.plans])),
                "server_work_reduction_total": float(1 - work.sum() / base.sum()) if base.sum() > 0 else 0.0,
                "sla_misses": int(misses)}

    # -- masks and observations ------------------------------------------------------------------
    def _current_mask(self) -> np.ndarray:
        mask = np.zeros(self.action_space.n, dtype=bool)
        if self.request is None:
            mask[0] = True      # terminal state: a dummy valid action, so the mask is never empty
            return mask
        if self.sla_infeasible:
            mask[0] = True      # no placement meets the SLA: the server-only fallback
            return mask
        if self.config["mode"] == "per_layer":
            mask[:2] = self.tables.action_mask(self.layer, self.prev, self.used)
        else:
            L = self.profile.num_layers
            mask[: L + 1] = self._prefix_latency <= self.sla_s * (1 + 1e-9)
        if not mask.any():  # pragma: no cover - the DP table guarantees a reachable action
            mask[0] = True
        return mask

    def _observation(self) -> dict[str, np.ndarray]:
        obs = self.layout.zeros()
        obs["progress"][0] = (self._ri if self.request is not None else len(self.requests)) / max(len(self.requests), 1)
        req = self.request
        if req is None:
            return self.layout.finish(obs)
        p, sla = self.profile, self.sla_s
        L = p.num_layers
        obs["layer_mask"][:L] = 1
        if self.w_so > 0:
            obs["layer_work_frac"][:L] = p.server_work_flops / self.w_so
        with np.errstate(over="ignore", invalid="ignore"):
            obs["layer_client_time"][:L] = p.client_time_s / sla
            obs["layer_server_time"][:L] = p.server_time_s / sla
            obs["boundary_up_time"][: L + 1] = p.up_s / sla
            obs["boundary_down_time"][: L + 1] = p.down_s / sla
        obs["sla_s"][0] = sla
        obs["request_tokens"][:] = (req.prompt_tokens, req.output_tokens)
        if self.config["mode"] == "per_layer":
            k = self.layer
            obs["layer_decided"][:k] = 1
            obs["layer_on_client"][:k] = self.x[:k]
            obs["current_layer"][k] = 1
            obs["prev_on_client"][0] = self.prev == CLIENT
            J = max(self.tables.budget_units, 1)
            obs["budget_used"][0] = self.used / J
            need = self.used + self.tables.step_units[k, self.prev] + self.tables.min_units_to_go[k + 1]
            obs["min_budget_needed"][:] = need / J
        else:
            obs["prefix_latency"][: L + 1] = self._prefix_latency / sla
            obs["prefix_saving"][: L + 1] = [self._saving(float(w)) for w in self._prefix_work]
        return self.layout.finish(obs)

    def _reset_info(self) -> dict:
        return {"num_requests": len(self.requests), "sla_infeasible": bool(self.sla_infeasible)}

    # -- rendering -------------------------------------------------------------------------------
    def _render_text(self) -> str:
        n = len(self.requests)
        lines = [f"ClientSplit  scenario={self.scenario.name} seed={self.scenario_seed} mode={self.config['mode']}  "
                 f"request {min(self._ri, n)}/{n}"]
        if self.plans:
            s = self.episode_summary()
            lines.append(f"so far: mean server-work saving {s['server_work_reduction_mean']:.1%}, "
                         f"SLA misses {s['sla_misses']}")
        req = self.request
        if req is None:
            lines.append("episode finished")
            return "\n".join(lines)
        dev = self.setting.clients[req.client].device.name
        lines.append(f"request {req.id}: {req.model} from {dev}, {req.prompt_tokens}+{req.output_tokens} tokens, "
                     f"SLA {self.sla_s:.4g} s{' (infeasible: server-only)' if self.sla_infeasible else ''}")
        if self.config["mode"] == "per_layer":
            loc = "".join("C" if v else "S" for v in self.x[: self.layer]) + "?" + "." * (len(self.x) - self.layer - 1)
            J = max(self.tables.budget_units, 1)
            lines.append(f"layers [{loc}]  budget {bar(self.used / J)} {self.used}/{J} steps of δ")
        else:
            lines.append(f"valid prefixes: {np.flatnonzero(self._mask).tolist()}")
        return "\n".join(lines)

    def _render_rgb(self) -> np.ndarray:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from .render import FIG_DPI, FIG_SIZE_IN

        fig = Figure(figsize=FIG_SIZE_IN, dpi=FIG_DPI)
        canvas = FigureCanvasAgg(fig)
        ax1, ax2 = fig.subplots(2, 1)
        if self.request is not None:
            p = self.profile
            L = p.num_layers
            decided = self.layer if self.config["mode"] == "per_layer" else 0
            colours = ["tab:orange" if (i < decided and self.x[i]) else ("tab:blue" if i < decided else "lightgrey")
                       for i in range(L)]
            ax1.bar(np.arange(L), p.server_work_flops / max(self.w_so, 1e-30), color=colours)
            ax1.set_title(f"{self.request.model}: layer work (orange client, blue server, grey open)", fontsize=9)
            ax1.set_xlabel("layer")
        savings = [pl["saving"] for pl in self.plans]
        ax2.plot(np.arange(len(savings)), savings, ".", color="tab:green")
        ax2.set_ylim(0, 1)
        ax2.set_xlabel("request")
        ax2.set_ylabel("server work saved")
        fig.tight_layout()
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()


__all__ = ["ClientSplitEnv", "SPLIT_CONFIG"]

"""Wrappers for training (docs/agents.md).

* :class:`RoutingFeatures` — a scale-free observation for ``distllm/RequestRouting-*``: per candidate
  chain its expected completion relative to the best candidate, its static cost and wait relative to
  that best, the free KV memory along it, and a few global load features.  It is a pure function of
  the env's own observation, so a policy trained on one scenario can run on another.
* :class:`TrainingSeeds` — every reset draws the scenario seed from ``[low, high)`` (default
  ``[0, 10 000)``: training never touches the held-out evaluation seeds, docs/contracts.md §5).
* :class:`MaskInObservation` — ``Dict({"observations": flat Box, "action_mask": Box{0,1}^n})``, the
  RLlib action-masking convention (docs/envs.md item 3).

All three are ``gymnasium`` wrappers that keep ``action_masks()`` reachable through
``env.get_wrapper_attr("action_masks")`` (what sb3-contrib's MaskablePPO calls).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..errors import PolicyLoadError, ScenarioError

#: seeds at or above this are held out for evaluation (docs/contracts.md §5)
EVAL_SEED_BASE = 10_000


class TrainingSeeds(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Draw every episode's scenario seed uniformly from ``[low, high)``.

    ``reset(seed=s)`` re-seeds the wrapper's own generator with ``s`` and then draws; ``reset()``
    draws from the generator as it stands.  So a seeded first reset (SB3's ``venv.seed``) makes every
    later episode reproducible, and no scenario seed ≥ ``high`` is ever used."""

    def __init__(self, env: gym.Env, low: int = 0, high: int = EVAL_SEED_BASE):
        """Draw each episode's seed from ``[low, high)``.

        Raises:
            ScenarioError: not integers with 0 ≤ ``low`` < ``high``."""
        gym.utils.RecordConstructorArgs.__init__(self, low=low, high=high)
        gym.Wrapper.__init__(self, env)
        if not (isinstance(low, (int, np.integer)) and isinstance(high, (int, np.integer)) and 0 <= low < high):
            raise ScenarioError("training_seeds", f"expected integers 0 ≤ low < high, got [{low}, {high})")
        self.low, self.high = int(low), int(high)
        self._rng = np.random.default_rng()
        self.episode_seeds: list[int] = []

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        s = int(self._rng.integers(self.low, self.high))
        self.episode_seeds.append(s)
        if len(self.episode_seeds) > 1000:
            del self.episode_seeds[:500]
        return self.env.reset(seed=s, options=options)

    def action_masks(self) -> np.ndarray:
        return self.env.get_wrapper_attr("action_masks")()


class RoutingFeatures(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Scale-free observation for ``distllm/RequestRouting-*`` (a flat ``Box``; use ``MlpPolicy``).

    From the env's observation (docs/envs.md), with T_k = ``cand_static_s[k]`` + ``cand_wait_s[k]``
    (start − now + session time: the candidate's completion − now, up to the request's constant
    initial and allocation delays) and T* = min over valid candidates of T_k, each of the K candidates
    gets ``PER_CAND`` features:

    0. valid (``cand_mask`` × ``cand_fits``);
    1. T_k / T* − 1 (0 for the best candidate; its extra per-token time in units of the best);
    2. ``cand_static_s[k]`` / T*;
    3. ``cand_wait_s[k]`` / T*;
    4. 1 if T_k = T* (a best candidate);
    5. rank of T_k among the valid candidates / K;
    6. hops / ``max_hops``;
    7. least ``server_free_frac`` over the chain's servers;
    8. block-weighted mean ``server_free_frac`` over the chain;
    9. least time to the next release over the chain's servers / T*;
    10. 1 if the candidate has the least wait among the valid candidates;
    11. 1 if it is the statically cheapest of those least-waiting candidates (the rule "wait as little
        as possible, then be fast", which under the ``published`` reservation accounting — a waiting
        request holds its slots — can beat "finish first" (features 1 and 4) for the requests behind).

    Global features: ``progress``, mean ``server_free_frac`` over real servers, the share of valid
    candidates that must wait, the number of valid candidates / K, and the output length /
    ``token_scale``.

    With the env's load features (``config["load_features"]``, on for the live-engine ids; docs/envs.md
    "Load features"), each candidate also gets ``LOAD_PER_CAND`` features, after the K × ``PER_CAND``
    block: with E_k = ``cand_load_per_token_s[k]`` (ws-rr-load's estimate) and E* its least valid value,

    0. E_k / E* − 1;
    1. 1 if E_k = E* (the candidate ws-rr-load would pick among these);
    2. ``cand_active_max[k]`` / (1 + ``cand_active_max[k]``);
    3. ``cand_queued_max_s[k]`` / T*;
    4. ``cand_step_ewma_max_s[k]`` / E* (recent observed step time against the best estimate);
    5. ``cand_free_min[k]``.

    With the defer action (``config["defer_s"]``), two more global features: ``request_defers_frac`` and
    ``request_age_s`` / T*.  Every feature is clipped into [0, ``clip``]."""

    PER_CAND = 12
    GLOBAL = 5
    LOAD_PER_CAND = 6
    DEFER_GLOBAL = 2

    def __init__(self, env: gym.Env, clip: float = 10.0, max_hops: int = 16, token_scale: float = 1024.0):
        """Wrap a RequestRouting env (see the class docstring).

        Raises:
            ScenarioError: ``env`` is not a distllm/RequestRouting-* env (its observation lacks the keys)."""
        gym.utils.RecordConstructorArgs.__init__(self, clip=clip, max_hops=max_hops, token_scale=token_scale)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        need = ("cand_mask", "cand_static_s", "cand_wait_s", "cand_fits", "cand_hops", "cand_blocks_frac",
                "server_mask", "server_free_frac", "server_next_release_s", "progress", "request_tokens")
        if not isinstance(space, spaces.Dict) or any(k not in space.spaces for k in need):
            raise ScenarioError("env_wrapper", "RoutingFeatures wraps a distllm/RequestRouting-* env (its observation "
                                               f"needs the keys {list(need)})")
        self.K = int(space["cand_mask"].shape[0])
        self.S = int(space["server_mask"].shape[0])
        self.clip, self.max_hops, self.token_scale = float(clip), float(max_hops), float(token_scale)
        self.load = "cand_load_per_token_s" in space.spaces
        self.defer = "request_age_s" in space.spaces
        n = self.K * (self.PER_CAND + self.LOAD_PER_CAND * self.load) + self.GLOBAL + self.DEFER_GLOBAL * self.defer
        self._structure_cache: dict[bytes, tuple] = {}
        self._arange = np.arange(self.K, dtype=np.float64)
        self.observation_space = spaces.Box(low=0.0, high=np.float32(self.clip), shape=(n,), dtype=np.float32)

    def _chain_structure(self, blocks_frac: np.ndarray) -> tuple:
        """``(rows, cols, starts, w, w_sum)`` of the K×S block matrix: the candidates with a server
        (rows), the servers of each in order (cols, flattened row-major), each row's first entry in
        cols, the block fractions there and their per-row sums.  Cached by content (the candidate
        lists of an episode repeat: the env caches them per (client, prompt, output))."""
        key = blocks_frac.tobytes()
        hit = self._structure_cache.get(key)
        if hit is None:
            blocks = blocks_frac.astype(np.float64).reshape(self.K, self.S)
            on = blocks > 0
            counts = on.sum(axis=1)
            rows = np.flatnonzero(counts)
            cols = np.nonzero(on)[1]
            starts = np.concatenate(([0], np.cumsum(counts[rows])[:-1])).astype(np.intp)
            w = blocks[on]
            w_sum = np.add.reduceat(w, starts) if rows.size else w
            if len(self._structure_cache) >= 4096:
                self._structure_cache.clear()
            hit = self._structure_cache[key] = (rows, cols, starts, w, w_sum)
        return hit

    def observation(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        # vectorised over the K candidates (issue 13 item 7): no per-candidate Python loop
        K = self.K
        valid = (obs["cand_mask"] > 0.5) & (obs["cand_fits"] > 0.5)
        static = obs["cand_static_s"].astype(np.float64)
        wait = obs["cand_wait_s"].astype(np.float64)
        total = static + wait
        n_valid = int(np.count_nonzero(valid))
        free = obs["server_free_frac"].astype(np.float64)
        if n_valid:
            best = float(total[valid].min())
            scale = best if best > 0 else 1.0
            order = np.argsort(np.where(valid, total, np.inf), kind="stable")
            rank = np.empty(K)
            rank[order] = self._arange
            least_wait = float(wait[valid].min())
            waits_least = valid & (wait <= least_wait + 1e-9)
            cheapest_of_least = int(np.argmin(np.where(waits_least, static, np.inf)))
            # every column for every candidate, then the invalid rows zeroed in one np.where: the valid
            # rows get exactly the floats of a per-candidate loop
            f = np.zeros((K, self.PER_CAND), dtype=np.float64)
            f[:, 0] = 1.0
            f[:, 1] = total / scale - 1.0
            f[:, 2] = static / scale
            f[:, 3] = wait / scale
            f[:, 4] = total <= best * (1 + 1e-9)
            f[:, 5] = rank / K
            f[:, 6] = obs["cand_hops"].astype(np.float64) / self.max_hops
            rows, cols, starts, w, w_sum = self._chain_structure(obs["cand_blocks_frac"])
            if rows.size:
                fr = free[cols]
                # per chain, over its servers in server order (the floats of a per-candidate loop)
                f[rows, 7] = np.minimum.reduceat(fr, starts)
                f[rows, 8] = np.add.reduceat(fr * w, starts) / w_sum       # block-weighted mean
                f[rows, 9] = np.minimum.reduceat(obs["server_next_release_s"].astype(np.float64)[cols], starts) / scale
            f[:, 10] = waits_least
            f[cheapest_of_least, 11] = 1.0
            feats = np.where(valid[:, None], f, 0.0)
        else:
            feats = np.zeros((K, self.PER_CAND), dtype=np.float64)
        g = np.zeros(self.GLOBAL, dtype=np.float64)
        g[0] = float(obs["progress"][0])
        smask = obs["server_mask"] > 0.5
        if smask.any():     # the float32 mean of ndarray.mean: float32 sum, float64 division, float32 result
            real = obs["server_free_frac"][smask]
            g[1] = float(np.float32(float(real.sum()) / real.size))
        g[2] = np.count_nonzero(wait[valid] > 0) / n_valid if n_valid else 0.0
        g[3] = n_valid / K
        g[4] = float(obs["request_tokens"][1]) / self.token_scale
        parts = [feats.ravel()]
        if self.load:
            parts.append(self._load_features(obs, valid, n_valid, scale if n_valid else 1.0).ravel())
        parts.append(g)
        if self.defer:
            parts.append(np.array([float(obs["request_defers_frac"][0]),
                                   float(obs["request_age_s"][0]) / (scale if n_valid else 1.0)]))
        out = np.concatenate(parts).astype(np.float32)
        np.fmax(out, 0.0, out=out)          # NaN and −inf → 0 (fmax ignores NaN)
        np.fmin(out, self.clip, out=out)    # +inf → clip
        return out

    def _load_features(self, obs: Mapping[str, np.ndarray], valid: np.ndarray, n_valid: int,
                       scale: float) -> np.ndarray:
        """The K × ``LOAD_PER_CAND`` load block (class docstring); zeros for invalid candidates."""
        f = np.zeros((self.K, self.LOAD_PER_CAND), dtype=np.float64)
        if not n_valid:
            return f
        est = obs["cand_load_per_token_s"].astype(np.float64)
        best = float(est[valid].min())
        e_scale = best if best > 0 else 1.0
        v = valid
        active = obs["cand_active_max"][v].astype(np.float64)
        f[v, 0] = est[v] / e_scale - 1.0
        f[v, 1] = est[v] <= best * (1 + 1e-9)
        f[v, 2] = active / (1.0 + active)
        f[v, 3] = obs["cand_queued_max_s"][v].astype(np.float64) / scale
        f[v, 4] = obs["cand_step_ewma_max_s"][v].astype(np.float64) / e_scale
        f[v, 5] = obs["cand_free_min"][v]
        return f

    def action_masks(self) -> np.ndarray:
        return self.env.get_wrapper_attr("action_masks")()


class MaskInObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Carry the action mask in the observation: ``Dict({"observations": Box, "action_mask": Box})``.

    ``observations`` is the wrapped observation flattened with :func:`gymnasium.spaces.flatten` (a
    ``Dict`` of boxes becomes one float32 vector, keys in sorted order); ``action_mask`` is
    ``env.action_masks()`` as float32 0/1 (never all zero).  This is the convention of RLlib's
    action-masking RL modules (docs/envs.md; docs/agents.md); the masking module of
    :mod:`distllm_env.agents.rllib` adds log(mask) to the logits."""

    def __init__(self, env: gym.Env):
        """Wrap ``env``, adding its action mask to the observation.

        Raises:
            ScenarioError: ``env``'s action space is not ``Discrete``."""
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        if not isinstance(env.action_space, spaces.Discrete):
            raise ScenarioError("env_wrapper", f"MaskInObservation needs a Discrete action space, got {env.action_space}")
        inner = env.observation_space
        self._inner = inner
        flat = spaces.flatten_space(inner)
        low = np.asarray(flat.low, dtype=np.float32)
        high = np.asarray(flat.high, dtype=np.float32)
        self.observation_space = spaces.Dict({
            "observations": spaces.Box(low=low, high=high, dtype=np.float32),
            "action_mask": spaces.Box(low=0.0, high=1.0, shape=(int(env.action_space.n),), dtype=np.float32),
        })

    def observation(self, obs: Any) -> dict[str, np.ndarray]:
        flat = np.asarray(spaces.flatten(self._inner, obs), dtype=np.float32)
        mask = np.asarray(self.env.get_wrapper_attr("action_masks")(), dtype=np.float32)
        return {"observations": flat, "action_mask": mask}

    def action_masks(self) -> np.ndarray:
        return self.env.get_wrapper_attr("action_masks")()


def load_wrapper(path: str):
    """The wrapper class at ``module:Class`` (``module.Class`` accepted).

    Raises:
        PolicyLoadError: the path cannot be imported or is not a gymnasium wrapper (or callable)."""
    from ..imports import load_object

    if ":" not in path:
        mod, _, cls = path.rpartition(".")
        path = f"{mod}:{cls}"
    obj = load_object(path)
    if not (isinstance(obj, type) and issubclass(obj, gym.Wrapper)) and not callable(obj):
        raise PolicyLoadError(f"{path!r} is not a gymnasium wrapper")
    return obj


def apply_wrappers(env: gym.Env, wrappers: Sequence[Mapping[str, Any]]) -> gym.Env:
    """Apply ``[{"path": "module:Class", "kwargs": {...}}, …]`` in order."""
    for w in wrappers or ():
        env = load_wrapper(w["path"])(env, **dict(w.get("kwargs") or {}))
    return env


__all__ = ["EVAL_SEED_BASE", "MaskInObservation", "RoutingFeatures", "TrainingSeeds", "apply_wrappers",
           "load_wrapper"]

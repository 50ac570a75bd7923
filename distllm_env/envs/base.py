"""Shared machinery of the ``distllm/*`` environments (docs/envs.md).

:class:`DistLLMEnv` fixes what every decision environment has in common:

* construction from ``scenario=`` (preset name, YAML path, mapping or :class:`Scenario`), optional
  ``overrides=`` (``--set`` style strings) and ``config=`` (a dict merged over
  :meth:`default_config`; unknown keys and bad values raise :class:`ScenarioError` with path
  ``config.<key>``).  Spaces depend on ``config`` only, never on the scenario, so one trained agent
  runs on every scenario that fits the padding (docs/contracts.md §9);
* seeding (docs/contracts.md §1): ``reset(seed=s)`` makes ``s`` the *scenario seed* — the instance,
  the workload and the policy streams are exactly those :func:`distllm_env.simulate` uses for
  ``seed=s``; ``reset(seed=None)`` draws the scenario seed from ``self.np_random``;
* invalid actions never raise (docs/contracts.md §9): the lowest-index valid action is used,
  ``info["invalid_action"]`` is set and ``config["invalid_action_penalty"]`` is subtracted;
* ``action_masks()`` (bool, for sb3-contrib's MaskablePPO) and ``info["action_mask"]`` (int8, the
  Gymnasium Taxi convention), both for the observation just returned;
* episode recording for :func:`distllm_env.replay.replay` (scenario seed + raw action list);
* ``render_mode`` ``"ansi"`` (text) and ``"rgb_array"`` (matplotlib, imported lazily).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import logger

from ..errors import ScenarioError
from ..instance import Instance, build_instance
from ..registry import check_scenario_policies, family_delay_s
from ..rng import check_seed, generators, seed_streams
from ..scenario import Scenario, load_scenario
from ..workload import Request, generate_requests

#: the largest scenario seed ``reset(seed=None)`` draws
MAX_DRAWN_SEED = 2**31 - 1


# --------------------------------------------------------------------------------------------------
# Config validation
# --------------------------------------------------------------------------------------------------

def _int_at_least(lo: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < lo:
            raise ScenarioError(f"config.{key}", f"expected an integer ≥ {lo}, got {value!r}")
        return int(value)
    return check


def _float_at_least(lo: float, strict: bool = False) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if ok:
            value = float(value)
            ok = math.isfinite(value) and (value > lo if strict else value >= lo)
        if not ok:
            rel = ">" if strict else "≥"
            raise ScenarioError(f"config.{key}", f"expected a finite number {rel} {lo}, got {value!r}")
        return value
    return check


def _choice(*options: Any) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if value not in options:
            raise ScenarioError(f"config.{key}", f"expected one of {list(options)}, got {value!r}")
        return value
    return check


def _optional(inner: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        return None if value is None else inner(key, value)
    return check


def _policy_spec(key: str, value: Any) -> Any:
    """A policy name / ``module:Class`` string, a policy object, or None (the default)."""
    if value is None or isinstance(value, str) or hasattr(value, "place") or hasattr(value, "route") \
            or hasattr(value, "split"):
        return value
    raise ScenarioError(f"config.{key}", f"expected a policy name, a 'module:Class' path or a policy object, "
                                         f"got {value!r}")


def _bool_option(key: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ScenarioError(f"config.{key}", f"expected true or false, got {value!r}")
    return bool(value)


def _family(key: str, value: Any) -> Any:
    if value is None or (isinstance(value, str) and value):
        return value
    raise ScenarioError(f"config.{key}", f"expected None (no allocation delay) or a policy family name such as "
                                         f"'petals', 'proposed' or 'default', got {value!r}")


COMMON_CONFIG: dict[str, tuple[Any, Callable[[str, Any], Any], str]] = {
    "max_servers": (64, _int_at_least(1), "padding of every per-server array (a larger scenario is an error)"),
    "max_blocks": (128, _int_at_least(1), "padding of every per-block array (a larger model is an error)"),
    "invalid_action_penalty": (0.0, _float_at_least(0.0), "subtracted from the reward of a step whose action "
                                                          "was invalid (the lowest-index valid action is used)"),
    "allocation_delay_family": (None, _family, "None: no allocation delay; a family name: the scenario's "
                                               "simulator.allocation_delay_s for that family (docs/contracts.md §4)"),
    "allocation_delay_s": (None, _optional(_float_at_least(0.0)), "None: by allocation_delay_family; a number: "
                                                                  "this delay (s) per request, whatever the family "
                                                                  "(e.g. compare --allocation-delays equal:S)"),
    "max_time_s": (1.0e4, _float_at_least(0.0, strict=True), "upper clip of every time feature (seconds)"),
    "allow_imports": (False, _bool_option, "let the scenario's policy_defaults.placement/routing name a "
                                           "'module:Class' import path (README, 'Trust boundary')"),
}


def merge_config(schema: Mapping[str, tuple[Any, Callable, str]], config: Mapping[str, Any] | None) -> dict:
    """Defaults of ``schema`` overridden by ``config``; unknown keys and bad values raise
    :class:`ScenarioError` naming ``config.<key>``."""
    out = {k: v[0] for k, v in schema.items()}
    if config is None:
        return out
    if not isinstance(config, Mapping):
        raise ScenarioError("config", f"expected a mapping of options, got {type(config).__name__}")
    for key, value in config.items():
        if key not in schema:
            raise ScenarioError(f"config.{key}", f"unknown option; expected one of {sorted(schema)}")
        out[key] = schema[key][1](key, value)
    return out


# --------------------------------------------------------------------------------------------------
# The base environment
# --------------------------------------------------------------------------------------------------

class DistLLMEnv(gym.Env):
    """Base class of the decision environments.  Subclasses implement ``_build_spaces``,
    ``_start_episode``, ``_apply`` (one valid action), ``_observation``, ``_current_mask`` and the
    renderers."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    decision = "base"
    default_scenario = "paper-clustered"
    CONFIG: dict[str, tuple[Any, Callable[[str, Any], Any], str]] = COMMON_CONFIG
    _episode_cache_size = 8

    def __init__(self, scenario: "str | Scenario | Mapping | None" = None, config: Mapping[str, Any] | None = None,
                 render_mode: str | None = None, overrides: Sequence[str] = (),
                 config_defaults: Mapping[str, Any] | None = None):
        """``scenario``: preset name, YAML path, mapping or :class:`Scenario` (default
        ``default_scenario``) with ``overrides``; ``config``: the env's options (:meth:`default_config`);
        ``config_defaults``: options of a preset id (its registration kwargs), merged UNDER ``config`` so
        ``gym.make(id, config={...})`` keeps the id's own defaults.

        Raises:
            ScenarioError: an unknown ``render_mode``, a bad ``config`` key or value, a bad scenario or
                override, an import path in the scenario's ``policy_defaults`` without
                ``config['allow_imports']``, or a scenario this env cannot serve."""
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ScenarioError("render_mode", f"expected None or one of {self.metadata['render_modes']}, "
                                               f"got {render_mode!r}")
        self.render_mode = render_mode
        if config_defaults:
            if config is not None and not isinstance(config, Mapping):
                raise ScenarioError("config", f"expected a mapping of options, got {type(config).__name__}")
            config = {**dict(config_defaults), **dict(config or {})}
        self.config = merge_config(self.CONFIG, config)
        if isinstance(overrides, str):
            overrides = [overrides]
        self.scenario: Scenario = load_scenario(self.default_scenario if scenario is None else scenario,
                                                list(overrides or ()))
        # scenario files are data: their policy_defaults may name an import path only on request
        check_scenario_policies(self.scenario, self.config.get("allow_imports", False))
        self._check_scenario(self.scenario)
        self._build_spaces()
        self.scenario_seed: int | None = None
        self.episode_index = 0
        self._actions: list[int] = []
        self._rewards: list[float] = []
        self._done = True
        self._mask = np.zeros(self.action_space.n, dtype=bool)
        self._last_obs: dict[str, np.ndarray] | None = None
        self._episode_cache: OrderedDict[int, tuple] = OrderedDict()

    # -- configuration -------------------------------------------------------------------------------
    @classmethod
    def default_config(cls) -> dict:
        """The default ``config`` dict of this environment (every accepted key)."""
        return {k: v[0] for k, v in cls.CONFIG.items()}

    @classmethod
    def config_doc(cls) -> dict[str, str]:
        return {k: v[2] for k, v in cls.CONFIG.items()}

    def _check_scenario(self, scenario: Scenario) -> None:
        L = scenario.model.num_blocks
        if L > self.config["max_blocks"]:
            raise ScenarioError("config.max_blocks", f"scenario {scenario.name!r} has a {L}-block model but the "
                                                     f"env pads to max_blocks={self.config['max_blocks']}")

    def _check_instance(self, inst: Instance) -> None:
        if inst.num_servers > self.config["max_servers"]:
            raise ScenarioError("config.max_servers", f"scenario {self.scenario.name!r} (seed {inst.seed}) has "
                                                      f"{inst.num_servers} servers but the env pads to "
                                                      f"max_servers={self.config['max_servers']}")

    def allocation_delay_s(self) -> float:
        """The allocation delay charged per request (docs/contracts.md §4): 0 unless
        ``config["allocation_delay_family"]`` names a family or ``config["allocation_delay_s"]`` gives the
        delay itself (it wins)."""
        if self.config.get("allocation_delay_s") is not None:
            return float(self.config["allocation_delay_s"])
        fam = self.config["allocation_delay_family"]
        if fam is None:
            return 0.0
        return family_delay_s(self.scenario.simulator.allocation_delay_s, fam)

    # -- episode data shared with simulate() ---------------------------------------------------------
    def _episode_data(self, seed: int) -> tuple[Instance, list[Request]]:
        """Instance and requests of ``seed`` exactly as :func:`distllm_env.simulate` builds them
        (cached for the last few seeds; both are pure functions of the scenario and the seed)."""
        hit = self._episode_cache.get(seed)
        if hit is None:
            inst = build_instance(self.scenario, seed)
            self._check_instance(inst)
            hit = (inst, generate_requests(inst, seed))
            self._episode_cache[seed] = hit
            while len(self._episode_cache) > self._episode_cache_size:
                self._episode_cache.popitem(last=False)
        else:
            self._episode_cache.move_to_end(seed)
        return hit

    @staticmethod
    def policy_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
        """``(placement_rng, routing_rng, env_rng)``: the first two are exactly the generators
        :func:`distllm_env.simulate` gives the placement and the routing policy for ``seed``
        (children 0 and 1 of the ``policy`` stream); ``env_rng`` (child 2) drives the env's own
        draws (e.g. a random server order), so it never perturbs a policy's stream."""
        a, b, c = generators(seed_streams(seed)["policy"], 3)
        return a, b, c

    # -- gymnasium API -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode; ``seed`` is a non-negative Python or numpy integer (the scenario seed) or
        None.  Raises :class:`ScenarioError` at ``seed`` / ``options`` for bad arguments."""
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
                raise ScenarioError("seed", f"expected None or an integer ≥ 0, got {seed!r}")
            seed = int(seed)   # gymnasium accepts Python ints only
        super().reset(seed=seed)
        if options:
            raise ScenarioError("options", f"reset() takes no options, got {sorted(options)}")
        if seed is None:
            scenario_seed = int(self.np_random.integers(0, MAX_DRAWN_SEED))
        else:
            scenario_seed = check_seed(seed)
        self.scenario_seed = scenario_seed
        self.episode_index += 1
        self._actions = []
        self._rewards = []
        self._done = False
        self._start_episode(scenario_seed)
        obs = self._observation()
        self._mask = self._current_mask()
        self._last_obs = obs
        info = self._reset_info()
        info["action_mask"] = self._mask.astype(np.int8)
        info["scenario_seed"] = scenario_seed
        return obs, info

    def step(self, action):
        """Gymnasium ``step``; an invalid (masked-out) action is replaced and penalised
        (``info['invalid_action']``), a step after the end returns the last observation.

        Raises:
            gymnasium.error.ResetNeeded: ``step()`` before the first ``reset()``."""
        if self._last_obs is None:
            from gymnasium.error import ResetNeeded

            raise ResetNeeded("call reset() before step()")
        if self._done:
            logger.warn("step() called after the episode ended; call reset() first")
            info = {"action_mask": self._mask.astype(np.int8), "invalid_action": True}
            return self._last_obs, 0.0, True, False, info
        raw, a, invalid = self._resolve_action(action)
        self._actions.append(raw)
        reward, terminated, info = self._apply(a)
        penalty = self.config["invalid_action_penalty"] if invalid else 0.0
        reward = float(reward) - penalty
        comps = info.setdefault("reward_components", {})
        comps["invalid_action"] = -penalty
        info["invalid_action"] = invalid
        info["action"] = a
        self._rewards.append(reward)
        self._done = bool(terminated)
        obs = self._observation()
        self._mask = self._current_mask()
        self._last_obs = obs
        info["action_mask"] = self._mask.astype(np.int8)
        return obs, reward, bool(terminated), False, info

    def action_masks(self) -> np.ndarray:
        """Valid actions of the current state (bool; sb3-contrib MaskablePPO's hook).  Never
        all-False."""
        return self._mask.copy()

    def _resolve_action(self, action) -> tuple[int, int, bool]:
        """``(raw, used, invalid)``: the action as an int (−1 if not an integer), the action that is
        applied, and whether it was invalid (out of range or masked)."""
        try:
            arr = np.asarray(action)
            if arr.size != 1 or not (np.issubdtype(arr.dtype, np.integer) or
                                     (np.issubdtype(arr.dtype, np.floating) and float(arr) == int(arr))):
                raise ValueError
            raw = int(arr.reshape(()))
        except (TypeError, ValueError, OverflowError):
            raw = -1
        if 0 <= raw < len(self._mask) and self._mask[raw]:
            return raw, raw, False
        return raw, int(np.argmax(self._mask)), True

    def render(self):
        if self.render_mode is None:
            logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        if self.render_mode == "ansi":
            return self._render_text()
        return self._render_rgb()

    def close(self):
        return None

    # -- episode records -----------------------------------------------------------------------------
    def episode_record(self):
        """The :class:`~distllm_env.replay.EpisodeRecord` of the current (or last) episode.

        Raises:
            RuntimeError: no episode has been started (``reset()`` was never called)."""
        from ..replay import EpisodeRecord

        if self.scenario_seed is None:
            raise RuntimeError("no episode has been started; call reset() first")
        sc = self.scenario
        if sc.source != "<dict>":       # a preset name or a YAML path: rebuilt with the same overrides
            scenario_ref, raw, overrides = sc.source, None, tuple(sc.overrides)
        else:                           # a mapping: its raw form already includes the overrides
            from ..yaml_safe import load_yaml_text

            scenario_ref, raw, overrides = None, load_yaml_text(sc.to_yaml(), "scenario"), ()
        return EpisodeRecord(
            env_id=self.spec.id if self.spec is not None else f"distllm/{self.decision_name}-v0",
            scenario=scenario_ref, scenario_raw=raw, overrides=overrides, scenario_hash=sc.hash,
            config=self.recordable_config(), seed=self.scenario_seed, actions=tuple(self._actions),
            rewards=tuple(self._rewards), terminated=self._done)

    def recordable_config(self) -> dict:
        """The config with policy objects replaced by their names (for records and sidecars)."""
        out = {}
        for k, v in self.config.items():
            if v is None or isinstance(v, (str, int, float, bool, list, tuple, dict)):
                out[k] = v
            else:
                out[k] = str(getattr(v, "name", type(v).__name__))
        return out

    decision_name = "Base"

    # -- hooks for subclasses ------------------------------------------------------------------------
    def _build_spaces(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _start_episode(self, seed: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply(self, action: int) -> tuple[float, bool, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _observation(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _current_mask(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reset_info(self) -> dict:
        return {}

    def _render_text(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _render_rgb(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


__all__ = ["COMMON_CONFIG", "DistLLMEnv", "MAX_DRAWN_SEED", "merge_config"]

"""Baselines as environment policies (``EnvPolicy.act(obs, info) -> int``, docs/contracts.md §7).

Every baseline of a decision runs through the matching environment, so "compare my policy with
the paper's" is one loop::

    env = gym.make("distllm/RequestRouting-v0")
    policy = RouterEnvPolicy("ws-rr", env)
    obs, info = env.reset(seed=0)
    while True:
        obs, r, terminated, truncated, info = env.step(policy.act(obs, info))
        if terminated or truncated:
            break

* :class:`RouterEnvPolicy` runs a routing baseline on the env's live simulator view, with the
  routing stream :func:`distllm_env.simulate` would give it for the same seed, and returns the index
  of its route among the candidates.  Fallback when the route is not a candidate (K too small, or
  the router raised :class:`~distllm_env.errors.NoFeasibleChain`): the valid candidate with the least
  expected per-token time (:meth:`RequestRoutingEnv.greedy_action`); ``fallbacks`` counts them.
* :class:`PlacementEnvPolicy` runs a placement baseline once per episode on the episode's instance
  with the placement stream :func:`distllm_env.simulate` would give it, and then returns, server by
  server, the action encoding the baseline's (start, count).  A baseline span the env masks (e.g. a
  count above what fits with one session) is replaced by the env's invalid-action rule;
  ``mismatches`` counts them.
* :class:`JoinEnvPolicy` runs a placement baseline's online rule ``place_joining`` (PETALS
  ``choose_best_blocks``, CG-BP's greedy window rule; docs/baselines.md "Online re-placement") at
  each join or rebalance decision of ``distllm/SwarmPlacement-*``, on the env's simulator view and
  placement stream, so it reproduces ``simulate`` with that placement policy record by record.
  PETALS' rule *with* rebalancing is ``JoinEnvPolicy("petals", env)`` on a scenario with
  ``churn.rebalance`` (e.g. ``overrides=["churn.rebalance.balance_quality=0.75"]``), *without* it the
  same policy on a scenario without that key (every shipped churn preset).
* :class:`SplitEnvPolicy` runs a split baseline (DP, greedy, server-only, exhaustive) per request
  and replays its plan layer by layer (or as a client prefix length).
* :class:`GreedyRoutingPolicy` picks the candidate of least expected per-token time (a myopic
  reference that uses the env's exact waiting times).
* :class:`MaskedRandomPolicy` / :class:`RandomPolicy`: uniform over valid / over all actions.

With the env's allocation delay equal to the one ``simulate`` charges (``allocation_delays={}`` ⇔
``config["allocation_delay_family"] = None``), a baseline through the env yields exactly the
per-request records of ``simulate`` for the same seed (tests/test_envs_baselines.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import NoFeasibleChain
from ..registry import make_placement, make_routing


class RouterEnvPolicy:
    """A routing baseline as a policy of ``distllm/RequestRouting-*`` (see the module docstring)."""

    def __init__(self, router: Any, env):
        self.env = env.unwrapped
        self.router = make_routing(router, self.env.scenario)
        self.name = str(getattr(self.router, "name", type(self.router).__name__))
        self.fallbacks = 0

    def act(self, obs: Any = None, info: dict | None = None) -> int:
        env = self.env
        if env.request is None:
            return 0
        try:
            route = self.router.route(env.request, env.view, env.routing_rng)
        except NoFeasibleChain:
            route = None
        idx = env.candidate_index(route)
        if idx is None:
            self.fallbacks += 1
            return env.greedy_action()
        return int(idx)


class PlacementEnvPolicy:
    """A placement baseline as a policy of ``distllm/BlockPlacement-*`` (see the module docstring)."""

    def __init__(self, placement: Any, env):
        self.env = env.unwrapped
        self.policy = make_placement(placement, self.env.scenario)
        self.name = str(getattr(self.policy, "name", type(self.policy).__name__))
        self.mismatches = 0
        self.result = None
        self._episode = None

    def act(self, obs: Any = None, info: dict | None = None) -> int:
        env = self.env
        if self._episode != (id(env), env.episode_index):
            self.result = self.policy.place(env.instance, env.placement_rng)
            self._episode = (id(env), env.episode_index)
        j = env.current_server
        if j is None:
            return 0
        pl = self.result.placement
        start, count = int(pl.starts[j]), int(pl.counts[j])
        action = env.encode_action(start if count else 0, count)
        if not env.action_masks()[action]:
            self.mismatches += 1
        return action


class JoinEnvPolicy:
    """A placement baseline's ``place_joining`` as a policy of ``distllm/SwarmPlacement-*`` (see the
    module docstring).  Raises :class:`~distllm_env.errors.PolicyLoadError` (unknown name) and
    :class:`TypeError` for a policy without ``place_joining``."""

    def __init__(self, placement: Any, env):
        self.env = env.unwrapped
        self.policy = make_placement(placement, self.env.scenario)
        self.name = str(getattr(self.policy, "name", type(self.policy).__name__))
        if not hasattr(self.policy, "place_joining"):
            raise TypeError(f"placement policy {self.name!r} has no place_joining (online re-placement) rule")

    def act(self, obs: Any = None, info: dict | None = None) -> int:
        env = self.env
        if env.pending is None:
            return 0
        j, count = env.pending
        return int(self.policy.place_joining(j, count, env.sim.view, env.placement_rng))


class SplitEnvPolicy:
    """A split baseline (``split(request, profile, sla_s) -> SplitPlan``) as a policy of
    ``distllm/ClientSplit-*``: the plan is computed once per request, with the same profile and SLA
    :func:`distllm_env.split.evaluate.evaluate_split` gives the policy, and replayed layer by layer
    (``per_layer``: x_l) or as its client prefix length (``per_request``).  A plan the env would
    replace (a masked layer choice, or in ``per_request`` mode a plan that is not a client prefix) is
    counted in ``mismatches``; in ``per_request`` mode the fallback is the valid prefix saving the
    most server work."""

    def __init__(self, policy: Any, env):
        from ..baselines.splitllm import SPLIT_POLICIES, make_split_policy

        self.env = env.unwrapped
        opts = {}
        if isinstance(policy, str) and policy in SPLIT_POLICIES:
            spec = self.env.scenario.split
            opts = {"budget_steps": spec.budget_steps, "delta_s": spec.delta_s}
        if isinstance(policy, str):   # the scenario's policy_defaults.options.<name>, as evaluate_split
            opts |= dict(self.env.scenario.policy_defaults.options.get(policy, {}))
        self.policy = make_split_policy(policy, **opts)
        self.name = str(getattr(self.policy, "name", type(self.policy).__name__))
        self.mismatches = 0
        self.plan = None
        self._key = None

    def act(self, obs: Any = None, info: dict | None = None) -> int:
        env = self.env
        if env.request is None:
            return 0
        key = (id(env), env.episode_index, env.request_index)
        if key != self._key:
            self.plan = self.policy.split(env.request, env.profile, env.sla_s)
            self._key = key
        x = np.asarray(self.plan.x, dtype=np.int64)
        mask = env.action_masks()
        if env.config["mode"] == "per_layer":
            a = int(x[env.layer])
            if not mask[a]:
                self.mismatches += 1
            return a
        c = int(np.argmin(x)) if (x == 0).any() else len(x)        # length of the leading client run
        if x[c:].any() or not mask[c]:
            self.mismatches += 1
            valid = np.flatnonzero(mask)
            saving = [env._saving(float(env._prefix_work[v])) if v < len(env._prefix_work) else -1 for v in valid]
            return int(valid[int(np.argmax(saving))])
        return c


class GreedyRoutingPolicy:
    """Route on the candidate with the least expected per-token time (myopic; uses the env's exact
    waiting times)."""

    name = "greedy"

    def __init__(self, env):
        self.env = env.unwrapped

    def act(self, obs: Any = None, info: dict | None = None) -> int:
        return self.env.greedy_action()


class MaskedRandomPolicy:
    """Uniform over the valid actions of ``info["action_mask"]`` (or ``env.action_masks()``)."""

    name = "masked-random"

    def __init__(self, rng: np.random.Generator | int | None = None, env=None):
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.env = None if env is None else env.unwrapped

    def act(self, obs: Any = None, info: dict | None = None) -> int:
        if info is not None and "action_mask" in info:
            mask = np.asarray(info["action_mask"]).astype(bool)
        else:
            mask = self.env.action_masks()
        return int(self.rng.choice(np.flatnonzero(mask)))


class RandomPolicy:
    """Uniform over the whole action space, masks ignored (to exercise the invalid-action rule)."""

    name = "random"

    def __init__(self, env, rng: np.random.Generator | int | None = None):
        self.n = int(env.action_space.n)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def act(self, obs: Any = None, info: dict | None = None) -> int:
        return int(self.rng.integers(0, self.n))


def run_episode(env, policy, seed: int | None = None) -> dict:
    """Run one episode of ``env`` with ``policy``; returns ``{"actions", "rewards", "return",
    "steps", "info"}`` (``info`` of the last step)."""
    obs, info = env.reset(seed=seed)
    actions, rewards = [], []
    while True:
        a = policy.act(obs, info)
        obs, r, terminated, truncated, info = env.step(a)
        actions.append(int(a))
        rewards.append(float(r))
        if terminated or truncated:
            break
    return {"actions": actions, "rewards": rewards, "return": float(np.sum(rewards)), "steps": len(actions),
            "info": info}


__all__ = ["GreedyRoutingPolicy", "JoinEnvPolicy", "MaskedRandomPolicy", "PlacementEnvPolicy", "RandomPolicy", "RouterEnvPolicy",
           "SplitEnvPolicy", "run_episode"]

"""Saved models as policies (docs/agents.md).

* :class:`LearnedModel` loads ``PATH.zip`` (SB3) or an RLlib checkpoint directory together with its
  sidecar, refuses a mismatched observation space (:class:`~.sidecar.ModelMismatchError`) and builds
  the env it was trained on for any scenario (:meth:`LearnedModel.make_env`).
* :class:`LearnedEnvPolicy` — ``act(obs, info) -> int`` on that env (an ``EnvPolicy``, docs/contracts.md §7).
* :class:`LearnedRouter` — a ``RoutingPolicy`` (``route(request, view, rng)``) and
  :class:`LearnedPlacement` — a ``PlacementPolicy`` (``place(instance, rng)``), so a trained model runs
  wherever a baseline does: :func:`distllm_env.simulate`, :func:`distllm_env.compare`,
  :func:`distllm_env.testing.assert_beats` and ``distllm-env compare --policies module:Class``.

How :class:`LearnedRouter` sees what the env saw: it drives a *shadow* ``RequestRouting`` env in lock
step with the simulation that calls it — same scenario, seed and placement (the caller's), so the
same requests arrive in the same order.  For each request it reads the shadow's observation, asks
the model, commits the chosen candidate in the shadow and returns that candidate's route, which the
caller commits too; both simulations therefore stay identical.  The shadow charges the allocation
delay the caller's simulation charges (env config ``allocation_delay_s``), so ``compare
--allocation-delays equal:S`` charges S to the learned router as to every baseline; with
``allocation_delays=`` given, the delay is that rule's for the ``default`` family and a caller charging
another one is refused (docs/contracts.md §4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import NoFeasibleChain, PlacementError, ScenarioError
from .envs import EnvFactory, check_env_id, decision_of
from .hyperparams import MASKED_ALGOS, algo_class
from .sidecar import ModelMismatchError, check_space, plain_sidecar, read_sidecar, sidecar_path, space_signature


class LearnedModel:
    """A trained model and its sidecar.  ``predict(obs, mask)`` returns one action (deterministic)."""

    def __init__(self, path: str | Path, device: str = "cpu", *, env_id: str | None = None, scenario: Any = None,
                 overrides: Sequence[str] = (), env_config: dict | None = None, algo: str | None = None,
                 zoo_dir: Any = None, wrappers: Sequence[Any] | None = None, allow_imports: bool = False):
        """Load the model at ``path`` (SB3 zip, RLlib checkpoint, or ``zoo:NAME``: a model of the agent
        zoo, :mod:`.zoo`, searched in ``zoo_dir`` first) and its sidecar.

        A plain SB3 zip without a sidecar is accepted when ``env_id`` is given: the model is taken to
        act on ``env_id`` (``scenario`` + ``overrides``, ``env_config``; ``algo`` None: read from the
        zip), behind ``wrappers`` (``module:Class`` or ``module.Class`` strings, ``{path: kwargs}`` or
        ``{"path", "kwargs"}`` mappings, applied in order; classes outside
        :data:`.hyperparams.ALLOWED_WRAPPER_MODULES` need ``allow_imports``), or, with ``wrappers``
        None, behind the first candidate list its observation space fits (:func:`.sidecar.plain_sidecar`).

        Raises:
            ModelMismatchError: ``path`` does not exist, the sidecar is missing (and no ``env_id``) or
                invalid, or names an unknown back-end; a plain zip that fits ``env_id`` behind none of
                the candidate wrappers (or behind ``wrappers``).
            ScenarioError: (path ``model``) ``zoo:NAME`` with an unknown name (the message lists them)
                or a recipe without a trained model; (path ``wrappers.I``) a bad wrapper, or
                ``wrappers`` without ``env_id``."""
        from .zoo import resolve_model

        self.path = resolve_model(path, zoo_dir)
        if not self.path.exists():
            raise ModelMismatchError("model", f"{str(self.path)!r} does not exist")
        plain = self.path.suffix == ".zip" and not sidecar_path(self.path).is_file()
        if wrappers is not None and not (env_id is not None and plain):
            raise ScenarioError("wrappers", "only for a plain SB3 zip without a sidecar, together with env_id "
                                            "(a sidecar already names the wrappers)")
        if env_id is not None and plain:
            from .hyperparams import parse_wrappers

            wr = None if wrappers is None else parse_wrappers(list(wrappers), "wrappers", allow_imports)
            self.sidecar = plain_sidecar(self.path, env_id, scenario, overrides, env_config, algo, wr)
        else:
            self.sidecar = read_sidecar(self.path)
        self.env_id = check_env_id(self.sidecar["env_id"], "sidecar.env_id")
        self.decision = decision_of(self.env_id)
        self.algo = self.sidecar["algo"]
        self.backend = self.sidecar["backend"]
        if self.backend == "sb3":
            cls = algo_class(self.algo)
            self.model = cls.load(str(self.path), device=device)
            check_space(self.sidecar, "observation_space", self.model.observation_space,
                        f"the observation space stored in {self.path.name}")
            check_space(self.sidecar, "action_space", self.model.action_space,
                        f"the action space stored in {self.path.name}")
            self.masked = self.algo in MASKED_ALGOS
        elif self.backend == "rllib":
            from .rllib import load_rl_module

            self.model = load_rl_module(self.path)
            self.masked = True
        else:
            raise ModelMismatchError("sidecar.backend", f"expected 'sb3' or 'rllib', got {self.backend!r}")
        self.name = self.path.stem if self.path.suffix == ".zip" else self.path.name

    # -- environments ----------------------------------------------------------------------------
    def env_config(self, **changes: Any) -> dict:
        cfg = dict(self.sidecar["env_config"])
        cfg.update(changes)
        return cfg

    def factory(self, scenario: Any = None, overrides: Sequence[str] = (), **config_changes: Any) -> EnvFactory:
        """The env the model was trained on (same id, config and wrappers) for ``scenario`` (None: the
        training scenario and overrides).  No :class:`~.wrappers.TrainingSeeds`: ``reset(seed=s)``
        plays scenario seed ``s``."""
        if scenario is None:
            scenario = self.sidecar.get("scenario_raw") or self.sidecar.get("scenario")
            overrides = list(self.sidecar.get("overrides") or ())
        wrappers = list(self.sidecar["wrappers"])
        if self.backend == "rllib":
            wrappers.append({"path": "distllm_env.agents.wrappers:MaskInObservation", "kwargs": {}})
        return EnvFactory(self.env_id, scenario, tuple(overrides), self.env_config(**config_changes), wrappers,
                          seed_range=None)

    def make_env(self, scenario: Any = None, overrides: Sequence[str] = (), **config_changes: Any):
        """:meth:`factory`'s env, checked against the sidecar: an observation or action space that differs
        (another config, a changed env version, a scenario beyond the padding) raises
        :class:`ModelMismatchError`."""
        factory = self.factory(scenario, overrides, **config_changes)
        try:
            env = factory()
        except ScenarioError as exc:
            if exc.path.startswith("config."):
                raise ModelMismatchError("sidecar.env_config", f"the model's env config does not fit {self.env_id}: "
                                                               f"{exc}") from None
            raise
        check_space(self.sidecar, "observation_space", env.observation_space,
                    f"the observation space of {self.env_id} on this scenario")
        check_space(self.sidecar, "action_space", env.action_space, f"the action space of {self.env_id}")
        return env

    # -- acting ------------------------------------------------------------------------------------
    def predict(self, obs: Any, mask: np.ndarray | None = None, deterministic: bool = True) -> int:
        if self.backend == "rllib":
            from .rllib import rl_module_action

            return rl_module_action(self.model, obs, deterministic=deterministic)
        if self.masked:
            action, _ = self.model.predict(obs, deterministic=deterministic, action_masks=mask)
        else:
            action, _ = self.model.predict(obs, deterministic=deterministic)
        return int(np.asarray(action).reshape(()))

    def summary(self) -> dict:
        s = self.sidecar
        keys = ("env_id", "algo", "backend", "scenario", "overrides", "scenario_hash", "version", "seed", "timesteps",
                "training_time_s")
        return {"model": str(self.path), **{k: s.get(k) for k in keys}}


def _as_model(model: "LearnedModel | str | Path") -> LearnedModel:
    return model if isinstance(model, LearnedModel) else LearnedModel(model)


class LearnedEnvPolicy:
    """A model as an ``EnvPolicy`` of the env it was trained on: ``act(obs, info) -> int``, where ``obs``
    is the wrapped observation (:meth:`LearnedModel.make_env`)."""

    def __init__(self, model: "LearnedModel | str | Path", env):
        self.model = _as_model(model)
        self.env = env
        self.name = self.model.name

    def act(self, obs: Any, info: dict | None = None) -> int:
        mask = self.env.get_wrapper_attr("action_masks")() if self.model.masked else None
        return self.model.predict(obs, mask)


class _GivenPlacement:
    """A placement policy returning a fixed :class:`PlacementResult` (the caller's)."""

    name = "given"
    family = "default"

    def __init__(self, result):
        self.result = result

    def place(self, instance, rng):
        return self.result


class _LearnedPolicy:
    """A trained model of one decision (``decision``) used as a simulator policy, family ``default``."""

    family = "default"
    decision: str

    def __init__(self, model: "LearnedModel | str | Path", deterministic: bool = True, name: str | None = None,
                 allocation_delays: Any = None):
        """``allocation_delays``: None (follow the calling simulation's delay; 0 where there is none), or a
        rule ``auto`` | ``scenario`` | ``zero`` | ``equal:SECONDS`` | ``{family: seconds}``
        (:func:`distllm_env.compare.parse_allocation_delays`), charged as to family ``default``.

        Raises:
            ScenarioError: the model is not of this decision (path ``model``), or a bad rule (path
                ``allocation_delays``)."""
        from ..allocation_delays import parse_allocation_delays

        self.model = _as_model(model)
        if self.model.decision != self.decision:
            raise ScenarioError("model", f"{self.model.path} was trained on {self.model.env_id}, not on a "
                                           f"{self.decision} env")
        self.deterministic = deterministic
        self.name = name or f"learned:{self.model.name}"
        self.allocation_delays = None if allocation_delays is None else parse_allocation_delays(allocation_delays,
                                                                                               "allocation_delays")

    @classmethod
    def load(cls, path: str | Path, *, env_id: str | None = None, scenario: Any = None, overrides: Sequence[str] = (),
             env_config: dict | None = None, algo: str | None = None, zoo_dir: Any = None,
             wrappers: Sequence[Any] | None = None, allow_imports: bool = False, **kwargs: Any):
        """The policy of the model at ``path`` (``zoo:NAME`` for a zoo model); a plain SB3 zip without
        a sidecar needs ``env_id`` (and ``wrappers`` when the candidates do not fit; :class:`LearnedModel`).
        ``kwargs`` go to the constructor.

        Raises:
            ModelMismatchError, ScenarioError: as :class:`LearnedModel` and the constructor."""
        return cls(LearnedModel(path, env_id=env_id, scenario=scenario, overrides=overrides, env_config=env_config,
                                algo=algo, zoo_dir=zoo_dir, wrappers=wrappers, allow_imports=allow_imports), **kwargs)

    @classmethod
    def from_zoo(cls, name: str, zoo_dir: Any = None, **kwargs: Any):
        """The zoo model ``name`` (``distllm-env zoo list``) as a policy; ``zoo_dir`` is searched before
        ``$DISTLLM_ENV_ZOO_DIR`` and the shipped zoo (:mod:`.zoo`).

        Raises:
            ScenarioError: (path ``model``) an unknown name (the message lists the known ones), a recipe
                without a trained model (the message says how to train it), or a model of another decision."""
        from .zoo import model_path

        return cls(LearnedModel(model_path(name, zoo_dir)), **kwargs)

    def _delay_s(self, scenario, caller_s: float | None = None) -> float:
        """The allocation delay (s) the model's env charges on ``scenario``: the rule's for family
        ``default``, else ``caller_s`` (the calling simulation's), else 0.

        Raises:
            RuntimeError: a rule is set and the caller charges another delay (the shadow would diverge)."""
        if self.allocation_delays is None:
            return float(caller_s or 0.0)
        delay = self.allocation_delays.delay_for(scenario, self.family)
        if caller_s is not None and abs(delay - caller_s) > 1e-9:
            raise RuntimeError(f"{self.name}: allocation_delays={self.allocation_delays.spec!r} gives {delay:g} s, but "
                               f"the calling simulation charges {caller_s:g} s; pass the same rule to both")
        return delay


class LearnedRouter(_LearnedPolicy):
    """A trained ``distllm/RequestRouting-*`` model as a routing policy (see the module docstring).

    ``place(instance, rng)`` runs the placement the model was trained with (the sidecar's
    ``config["placement"]``, else the scenario's default), so ``compare()`` pairs the router with it."""

    decision = "RequestRouting"

    def __init__(self, model: "LearnedModel | str | Path", deterministic: bool = True, name: str | None = None,
                 allocation_delays: Any = None):
        super().__init__(model, deterministic, name, allocation_delays)
        self._view = None
        self._env = None
        self._obs = None
        self.decisions = 0

    # -- PlacementPolicy (the model's training placement) ---------------------------------------------
    def place(self, instance, rng):
        from ..api import place as run_place
        from ..placement import CachePolicy, PlacementResult
        from ..registry import default_placement

        cfg = self.model.sidecar["env_config"]
        spec = cfg.get("placement") or default_placement(instance.scenario)
        result, _, _ = run_place(instance, spec, rng, instance.scenario)
        if cfg.get("cache_policy"):
            result = PlacementResult(result.placement, CachePolicy.parse(cfg["cache_policy"]), result.diagnostics)
        return result

    # -- RoutingPolicy -----------------------------------------------------------------------------------
    def _begin(self, view) -> None:
        from ..placement import PlacementResult

        inst = view.instance
        given = _GivenPlacement(PlacementResult(view.placement, view.cache_policy))
        # the caller's delay (the simulator's public attribute behind the view), so the shadow stays in step
        caller_s = getattr(getattr(view, "_sim", None), "allocation_delay_s", None)
        self._env = self.model.make_env(inst.scenario, (), placement=given, cache_policy=None,
                                        allocation_delay_family=None,
                                        allocation_delay_s=self._delay_s(inst.scenario, caller_s))
        self._obs, _ = self._env.reset(seed=int(inst.seed))
        shadow = self._env.unwrapped.instance
        if shadow.num_servers != inst.num_servers or not np.array_equal(shadow.memory_bytes, inst.memory_bytes) \
                or not np.allclose(shadow.rtt_s, inst.rtt_s, equal_nan=True):
            raise RuntimeError("LearnedRouter: the shadow env's instance differs from the caller's (was the instance "
                               "built with build_instance(scenario, seed)?)")
        self._view = view

    def route(self, request, view, rng):
        """The model's choice for ``request`` (driven through a shadow RequestRouting env).

        Raises:
            NoFeasibleChain: no chain reaches the request at all.
            RuntimeError: the caller routes requests in another order than the simulator (out of sync)."""
        if view is not self._view:
            self._begin(view)
        base = self._env.unwrapped
        cur = base.request
        if cur is None or cur.id > request.id:
            # the shadow rejected this request without a decision: no chain reaches it at all
            raise NoFeasibleChain(f"request {request.id}: no feasible chain")
        if cur.id != request.id or abs(cur.arrival_s - request.arrival_s) > 1e-9:
            raise RuntimeError(f"LearnedRouter out of sync: the caller routes request {request.id} at "
                               f"{request.arrival_s:.6f} s, the shadow env is at request {cur.id} at {cur.arrival_s:.6f} s "
                               "(requests given explicitly, or a splitter, are not supported)")
        routes = base.candidate_routes
        mask = self._env.get_wrapper_attr("action_masks")() if self.model.masked else None
        action = self.model.predict(self._obs, mask, self.deterministic)
        self._obs, _, _, _, info = self._env.step(action)
        self.decisions += 1
        return routes[int(info["action"])]


class LearnedPlacement(_LearnedPolicy):
    """A trained ``distllm/BlockPlacement-*`` model as a placement policy: ``place(instance, rng)`` plays
    one episode of the env on ``instance``'s scenario (its λ, whatever ``arrival_rate_per_s`` the model
    was trained with) and seed and returns the resulting placement; a model trained with
    ``action: "sessions"`` (e.g. ``distllm/BlockPlacementSessions-*``) picks CG-BP's |R| in its one step
    (with the env's ``cache_policy``).  ``route`` is the env's end-of-episode router, so ``compare()``
    evaluates the placement as the env did during training."""

    decision = "BlockPlacement"

    def __init__(self, model: "LearnedModel | str | Path", deterministic: bool = True, name: str | None = None,
                 allocation_delays: Any = None):
        super().__init__(model, deterministic, name, allocation_delays)
        self._router = None
        self._router_scenario = None

    def place(self, instance, rng):
        """The model's placement, built by stepping a BlockPlacement env on ``instance``.

        Raises:
            RuntimeError: the env's instance differs from ``instance``.
            PlacementError: the model's placement leaves blocks uncovered."""
        # arrival_rate_per_s=None: the caller's scenario λ (a model trained on a λ range sees the real one)
        env = self.model.make_env(instance.scenario, (), allocation_delay_family=None,
                                  allocation_delay_s=self._delay_s(instance.scenario), arrival_rate_per_s=None)
        obs, _ = env.reset(seed=int(instance.seed))
        base = env.unwrapped
        if base.instance.num_servers != instance.num_servers or not np.array_equal(base.instance.memory_bytes,
                                                                                   instance.memory_bytes):
            raise RuntimeError("LearnedPlacement: the env's instance differs from the caller's")
        while True:
            mask = env.get_wrapper_attr("action_masks")() if self.model.masked else None
            obs, _, terminated, truncated, info = env.step(self.model.predict(obs, mask, self.deterministic))
            if terminated or truncated:
                break
        result = base.result
        if result is None:
            raise PlacementError(f"{self.name}: the model's placement leaves blocks uncovered "
                                 f"({info.get('uncovered_ranges')})", tuple(info.get("uncovered_ranges") or ()))
        return result

    def route(self, request, view, rng):
        from ..registry import default_routing, make_routing

        sc = view.instance.scenario
        if self._router is None or self._router_scenario is not sc:
            spec = self.model.sidecar["env_config"].get("router") or default_routing(sc)
            self._router, self._router_scenario = make_routing(spec, sc), sc
        return self._router.route(request, view, rng)


def learned_policy(model: "LearnedModel | str | Path", **kwargs):
    """:class:`LearnedRouter` or :class:`LearnedPlacement`, by the model's env.

    Raises:
        ScenarioError: (path ``model``) the model's env is neither RequestRouting nor BlockPlacement."""
    m = _as_model(model)
    if m.decision == "RequestRouting":
        return LearnedRouter(m, **kwargs)
    if m.decision == "BlockPlacement":
        return LearnedPlacement(m, **kwargs)
    raise ScenarioError("model", f"{m.env_id}: only RequestRouting and BlockPlacement models run inside the "
                                   "simulator; use LearnedEnvPolicy on the env")


__all__ = ["LearnedEnvPolicy", "LearnedModel", "LearnedPlacement", "LearnedRouter", "learned_policy",
           "space_signature"]

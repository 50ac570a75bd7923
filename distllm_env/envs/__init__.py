"""Gymnasium environments (docs/envs.md).  Registered on ``import distllm_env``.

Ids (namespace ``distllm``):

* ``distllm/BlockPlacement-v0``, ``distllm/RequestRouting-v0`` (default scenario
  ``paper-clustered``) and ``distllm/ClientSplit-v0`` (default scenario: the first ``splitllm-*``
  preset);
* ``distllm/SwarmPlacement-v0`` (default scenario ``clustered-churn``);
* ``distllm/BlockPlacementSessions-v0`` and ``-PaperBellcanada-v0`` / ``-PaperGtsce-v0``: BlockPlacement with
  ``config_defaults`` :data:`PLACEMENT_SESSIONS_DEFAULTS` (one step choosing CG-BP's |R|, λ drawn per episode);
* preset ids ``distllm/<Decision>-<PresetCamel>-v0`` for every shipped scenario: BlockPlacement and
  RequestRouting for the geo presets, ClientSplit for the ``splitllm-*`` presets, SwarmPlacement for
  the presets with a ``churn:`` section (``paper-clustered`` → ``PaperClustered``);
* the RequestRouting ids of the presets run by the live engine without churn (contended
  ``server_model`` or unknown output lengths: the ``azure-*`` presets) get ``config_defaults``
  :data:`LOAD_DEFAULTS` (load features on), and each also has a
  ``distllm/RequestRoutingDefer-<PresetCamel>-v0`` id with
  :data:`DEFER_DEFAULTS` (load features and the defer action on).

``config_defaults`` (registration kwargs) are merged under the ``config`` a caller passes, so
``gym.make(id, config={"K": 4})`` keeps the id's own defaults (:class:`~distllm_env.envs.base.DistLLMEnv`).

In worker processes (SB3 ``SubprocVecEnv``, Gymnasium ``AsyncVectorEnv`` with spawn/forkserver) use
the module prefix, which imports the package and so registers the ids::

    gym.make("distllm_env:distllm/RequestRouting-v0")
"""

from __future__ import annotations

import re

NAMESPACE = "distllm"
VERSION = 0
ENTRY_POINTS = {
    "BlockPlacement": "distllm_env.envs.placement:BlockPlacementEnv",
    "RequestRouting": "distllm_env.envs.routing:RequestRoutingEnv",
    "ClientSplit": "distllm_env.envs.split:ClientSplitEnv",
    "SwarmPlacement": "distllm_env.envs.swarm:SwarmPlacementEnv",
}
SPLIT_PRESET_PREFIX = "splitllm-"
#: ``config_defaults`` of the ``distllm/BlockPlacementSessions-*`` ids (docs/envs.md, "The sessions action")
PLACEMENT_SESSIONS_DEFAULTS = {"action": "sessions", "arrival_rate_per_s": [0.5, 8.0]}
#: presets with a ``BlockPlacementSessions`` id (the placement target of issue 13: λ = 4 on both)
PLACEMENT_SESSIONS_PRESETS = ("paper-bellcanada", "paper-gtsce")
#: ``config_defaults`` of the RequestRouting ids of the live-engine presets (docs/envs.md "Load features")
LOAD_DEFAULTS = {"load_features": True}
#: defer step (s) of the ``RequestRoutingDefer-*`` ids: an assumption, a few decode tokens of a loaded swarm
#: chain and about the azure presets' mean inter-arrival time (≈ 1.7 s)
DEFAULT_DEFER_S = 2.0
#: ``config_defaults`` of the ``distllm/RequestRoutingDefer-*`` ids (docs/envs.md "Defer action")
DEFER_DEFAULTS = {"load_features": True, "defer_s": DEFAULT_DEFER_S}


def preset_camel(name: str) -> str:
    """``paper-clustered`` → ``PaperClustered`` (the preset part of a preset id)."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-") if part)


def env_id(decision: str, preset: str | None = None) -> str:
    """The registered id of a decision, optionally for a preset scenario."""
    suffix = f"-{preset_camel(preset)}" if preset else ""
    return f"{NAMESPACE}/{decision}{suffix}-v{VERSION}"


def _presets() -> list[str]:
    try:
        from ..scenario import list_presets

        return list_presets()
    except Exception:  # noqa: BLE001 - registration must never break the package import
        return []


_CHURN_KEY = re.compile(r"^churn\s*:", re.M)


def has_churn_section(yaml_text: str) -> bool:
    """Whether a scenario file's text has a top-level ``churn:`` key (a text scan, no YAML parse:
    registration must cost nothing)."""
    return _CHURN_KEY.search(yaml_text) is not None


def _churn_presets(presets: list[str]) -> list[str]:
    """The presets whose file has a top-level ``churn:`` key (a text scan: no YAML parse at import)."""
    try:
        from ..scenario.loading import preset_path

        return [p for p in presets if has_churn_section(preset_path(p).read_text(encoding="utf-8"))]
    except Exception:  # noqa: BLE001 - registration must never break the package import
        return []


_LIVE_KEY = re.compile(r"^\s*(server_model\s*:\s*(serial|batched)|output_tokens_known\s*:\s*false)\b", re.M)


def uses_live_routing(yaml_text: str) -> bool:
    """Whether a scenario file's text asks for the live engine without churn: a contended
    ``server_model`` or ``output_tokens_known: false`` and no ``churn:`` key (a text scan, no YAML
    parse: registration must cost nothing)."""
    return _LIVE_KEY.search(yaml_text) is not None and not has_churn_section(yaml_text)


def _live_presets(presets: list[str]) -> list[str]:
    """The presets whose RequestRouting ids get the load features (:func:`uses_live_routing`)."""
    try:
        from ..scenario.loading import preset_path

        return [p for p in presets if uses_live_routing(preset_path(p).read_text(encoding="utf-8"))]
    except Exception:  # noqa: BLE001 - registration must never break the package import
        return []


def registered_ids() -> list[str]:
    """Every ``distllm/*`` id currently in the Gymnasium registry."""
    import gymnasium as gym

    return sorted(i for i in gym.registry if i.startswith(f"{NAMESPACE}/"))


def register_envs() -> None:
    """Register every ``distllm/*`` environment id (idempotent)."""
    import gymnasium as gym

    if env_id("RequestRouting") in gym.registry:
        return
    presets = _presets()
    split_presets = [p for p in presets if p.startswith(SPLIT_PRESET_PREFIX)]
    geo_presets = [p for p in presets if not p.startswith(SPLIT_PRESET_PREFIX)]
    live = set(_live_presets(geo_presets))
    for decision in ("BlockPlacement", "RequestRouting"):
        gym.register(id=env_id(decision), entry_point=ENTRY_POINTS[decision])
        for p in geo_presets:
            kwargs = {"scenario": p}
            if decision == "RequestRouting" and p in live:
                kwargs["config_defaults"] = dict(LOAD_DEFAULTS)
            gym.register(id=env_id(decision, p), entry_point=ENTRY_POINTS[decision], kwargs=kwargs)
    for p in sorted(live):
        gym.register(id=env_id("RequestRoutingDefer", p), entry_point=ENTRY_POINTS["RequestRouting"],
                     kwargs={"scenario": p, "config_defaults": dict(DEFER_DEFAULTS)})
    if split_presets:
        gym.register(id=env_id("ClientSplit"), entry_point=ENTRY_POINTS["ClientSplit"])
        for p in split_presets:
            gym.register(id=env_id("ClientSplit", p), entry_point=ENTRY_POINTS["ClientSplit"], kwargs={"scenario": p})
    sessions = {"config_defaults": dict(PLACEMENT_SESSIONS_DEFAULTS)}
    gym.register(id=env_id("BlockPlacementSessions"), entry_point=ENTRY_POINTS["BlockPlacement"], kwargs=sessions)
    for p in PLACEMENT_SESSIONS_PRESETS:
        if p in geo_presets:
            gym.register(id=env_id("BlockPlacementSessions", p), entry_point=ENTRY_POINTS["BlockPlacement"],
                         kwargs={"scenario": p, **sessions})
    gym.register(id=env_id("SwarmPlacement"), entry_point=ENTRY_POINTS["SwarmPlacement"])
    for p in _churn_presets(geo_presets):
        gym.register(id=env_id("SwarmPlacement", p), entry_point=ENTRY_POINTS["SwarmPlacement"],
                     kwargs={"scenario": p})


__all__ = ["DEFAULT_DEFER_S", "DEFER_DEFAULTS", "ENTRY_POINTS", "LOAD_DEFAULTS", "NAMESPACE", "PLACEMENT_SESSIONS_DEFAULTS", "PLACEMENT_SESSIONS_PRESETS", "env_id", "has_churn_section", "preset_camel", "register_envs", "registered_ids", "uses_live_routing"]

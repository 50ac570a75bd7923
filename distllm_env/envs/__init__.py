"""Gymnasium environments (docs/envs.md).  Registered on ``import distllm_env``.

Ids (namespace ``distllm``):

* ``distllm/BlockPlacement-v0``, ``distllm/RequestRouting-v0`` (default scenario
  ``paper-clustered``) and ``distllm/ClientSplit-v0`` (default scenario: the first ``splitllm-*``
  preset);
* ``distllm/SwarmPlacement-v0`` (default scenario ``clustered-churn``);
* preset ids ``distllm/<Decision>-<PresetCamel>-v0`` for every shipped scenario: BlockPlacement and
  RequestRouting for the geo presets, ClientSplit for the ``splitllm-*`` presets, SwarmPlacement for
  the presets with a ``churn:`` section (``paper-clustered`` → ``PaperClustered``).

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
    for decision in ("BlockPlacement", "RequestRouting"):
        gym.register(id=env_id(decision), entry_point=ENTRY_POINTS[decision])
        for p in geo_presets:
            gym.register(id=env_id(decision, p), entry_point=ENTRY_POINTS[decision], kwargs={"scenario": p})
    if split_presets:
        gym.register(id=env_id("ClientSplit"), entry_point=ENTRY_POINTS["ClientSplit"])
        for p in split_presets:
            gym.register(id=env_id("ClientSplit", p), entry_point=ENTRY_POINTS["ClientSplit"], kwargs={"scenario": p})
    gym.register(id=env_id("SwarmPlacement"), entry_point=ENTRY_POINTS["SwarmPlacement"])
    for p in _churn_presets(geo_presets):
        gym.register(id=env_id("SwarmPlacement", p), entry_point=ENTRY_POINTS["SwarmPlacement"],
                     kwargs={"scenario": p})


__all__ = ["ENTRY_POINTS", "NAMESPACE", "env_id", "has_churn_section", "preset_camel", "register_envs", "registered_ids"]

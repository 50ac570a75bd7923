"""Recorded episodes and their replay (CompilerGym's ``CompilerEnvState`` idea, docs/envs.md).

An episode of a ``distllm/*`` environment is fully determined by (env id, scenario, overrides,
config, scenario seed, action list): the instance, the workload and every policy stream derive from
the scenario seed (docs/contracts.md §1) and the env draws nothing else.  :class:`EpisodeRecord` stores
exactly that, plus the rewards seen and the scenario's content hash, as JSON::

    rec = env.unwrapped.episode_record()      # after (or during) an episode
    rec.save("episode.json")
    result = distllm_env.replay("episode.json")
    assert result.valid, result.mismatches

:func:`replay` rebuilds the env, resets it with the recorded seed, re-applies the actions and checks
that the scenario hash, every reward (exactly, unless ``reward_atol`` is given) and the termination
step agree.  Actions are replayed as recorded, so an invalid action is handled by the env's
invalid-action rule exactly as it was when recorded; ``require_valid=True`` additionally rejects an
episode that contains one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ._version import __version__

RECORD_FORMAT = 1


@dataclass(frozen=True)
class EpisodeRecord:
    """Everything needed to reproduce one episode (JSON-serialisable)."""

    env_id: str
    scenario: str | None
    scenario_raw: Mapping[str, Any] | None
    overrides: tuple[str, ...]
    scenario_hash: str
    config: Mapping[str, Any]
    seed: int
    actions: tuple[int, ...]
    rewards: tuple[float, ...] = ()
    terminated: bool = False
    version: str = __version__
    format: int = RECORD_FORMAT

    def to_dict(self) -> dict:
        d = asdict(self)
        d["overrides"] = list(self.overrides)
        d["actions"] = [int(a) for a in self.actions]
        d["rewards"] = [float(r) for r in self.rewards]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=True)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EpisodeRecord":
        """The record read back from :meth:`to_dict` / its JSON form.

        Raises:
            ValueError: a required field (``env_id``, ``scenario_hash``, ``config``, ``seed``, ``actions``) is
                missing, or ``format`` is not :data:`RECORD_FORMAT`."""
        missing = [k for k in ("env_id", "scenario_hash", "config", "seed", "actions") if k not in d]
        if missing:
            raise ValueError(f"episode record is missing field(s) {missing}")
        fmt = int(d.get("format", RECORD_FORMAT))
        if fmt != RECORD_FORMAT:
            raise ValueError(f"episode record format {fmt} is not supported (expected {RECORD_FORMAT})")
        return cls(env_id=str(d["env_id"]), scenario=d.get("scenario"), scenario_raw=d.get("scenario_raw"),
                   overrides=tuple(d.get("overrides", ())), scenario_hash=str(d["scenario_hash"]),
                   config=dict(d["config"]), seed=int(d["seed"]), actions=tuple(int(a) for a in d["actions"]),
                   rewards=tuple(float(r) for r in d.get("rewards", ())), terminated=bool(d.get("terminated", False)),
                   version=str(d.get("version", "")), format=fmt)

    @classmethod
    def load(cls, path: str | Path) -> "EpisodeRecord":
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class ReplayResult:
    """Outcome of :func:`replay`.  ``valid`` is True iff ``mismatches`` is empty."""

    record: EpisodeRecord
    steps: int
    rewards: list[float]
    terminated: bool
    invalid_actions: int
    mismatches: list[str] = field(default_factory=list)
    final_info: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.mismatches

    @property
    def total_reward(self) -> float:
        return float(sum(self.rewards))


def make_env(record: EpisodeRecord, **kwargs):
    """The environment of ``record`` (``gym.make`` of its id with its scenario, overrides and config).

    Raises:
        ValueError: the record names no scenario (neither ``scenario`` nor ``scenario_raw``).
        ScenarioError: the scenario, its overrides or the env config do not load (as ``gym.make``)."""
    import gymnasium as gym

    from . import envs  # noqa: F401 - registers the ids

    scenario: Any = record.scenario if record.scenario is not None else dict(record.scenario_raw or {})
    if not scenario:
        raise ValueError("episode record names no scenario (neither 'scenario' nor 'scenario_raw')")
    return gym.make(record.env_id, scenario=scenario, overrides=list(record.overrides), config=dict(record.config),
                    **kwargs)


def _same(a: float, b: float, atol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b if atol == 0 else abs(a - b) <= atol


def replay(record: "EpisodeRecord | Mapping | str | Path", *, reward_atol: float = 0.0,
           require_valid: bool = False) -> ReplayResult:
    """Re-run a recorded episode and validate it (see the module docstring).

    ``record`` is an :class:`EpisodeRecord`, its dict form, or a path to its JSON file."""
    if isinstance(record, (str, Path)):
        record = EpisodeRecord.load(record)
    elif isinstance(record, Mapping):
        record = EpisodeRecord.from_dict(record)
    env = make_env(record)
    try:
        mismatches, notes = [], []
        unwrapped = env.unwrapped
        if unwrapped.scenario.hash != record.scenario_hash:
            mismatches.append(f"scenario hash {unwrapped.scenario.hash} differs from the recorded "
                              f"{record.scenario_hash}: the scenario changed")
        if record.version and record.version != __version__:
            notes.append(f"recorded with distllm-env {record.version}, replayed with {__version__}")
        obs, info = env.reset(seed=record.seed)
        rewards: list[float] = []
        invalid = 0
        terminated = truncated = False
        for i, a in enumerate(record.actions):
            if terminated or truncated:
                mismatches.append(f"the episode ended after {i} steps but {len(record.actions)} actions were recorded")
                break
            obs, r, terminated, truncated, info = env.step(a)
            rewards.append(float(r))
            invalid += bool(info.get("invalid_action", False))
            if i < len(record.rewards) and not _same(float(r), record.rewards[i], reward_atol):
                mismatches.append(f"step {i}: reward {r!r} differs from the recorded {record.rewards[i]!r}")
        if record.rewards and len(record.rewards) != len(record.actions):
            mismatches.append(f"{len(record.rewards)} rewards recorded for {len(record.actions)} actions")
        if record.terminated and not terminated:
            mismatches.append("the recorded episode terminated but the replay did not")
        if not record.terminated and terminated and len(rewards) == len(record.actions):
            notes.append("the replay terminated although the record was saved before the end")
        if require_valid and invalid:
            mismatches.append(f"{invalid} invalid action(s) (require_valid=True)")
        return ReplayResult(record=record, steps=len(rewards), rewards=rewards, terminated=bool(terminated),
                            invalid_actions=invalid, mismatches=mismatches, final_info=dict(info), notes=notes)
    finally:
        env.close()


def record_episode(env, policy, seed: int | None = None) -> EpisodeRecord:
    """Run one episode of ``env`` with ``policy`` (``act(obs, info) -> int``) and return its record."""
    obs, info = env.reset(seed=seed)
    while True:
        obs, r, terminated, truncated, info = env.step(policy.act(obs, info))
        if terminated or truncated:
            break
    return env.unwrapped.episode_record()


__all__ = ["EpisodeRecord", "ReplayResult", "make_env", "record_episode", "replay"]

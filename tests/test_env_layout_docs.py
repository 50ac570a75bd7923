"""docs/envs.md shows the observation layout of every env kind exactly as ``ObsLayout.markdown()``
prints it (issue 13 item 3), and every registered id has one of those layouts.

The tables live between the markers below; they are computed from the envs at test time (the
placement layout changes as that env grows), so regenerate them after changing a layout with::

    python tests/test_env_layout_docs.py --write
"""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import pytest

import distllm_env  # noqa: F401 - registers the ids
from distllm_env.envs import registered_ids

DOC = Path(__file__).resolve().parents[1] / "docs" / "envs.md"
BEGIN = "<!-- BEGIN GENERATED: layouts (python tests/test_env_layout_docs.py --write) -->"
END = "<!-- END GENERATED: layouts -->"

#: (heading, an id of that kind); the ids use their default scenario and config
KINDS = [
    ("RequestRouting, default: `distllm/RequestRouting-v0` and the `paper-*`, `petals-*`, `tiny` and churn "
     "preset ids", "distllm/RequestRouting-v0"),
    ("RequestRouting with load features: the live-engine preset ids `distllm/RequestRouting-Azure*-v0` "
     "(`config={\"load_features\": True}` elsewhere)", "distllm/RequestRouting-AzureConvSwarm-v0"),
    ("RequestRouting with load features and the defer action: `distllm/RequestRoutingDefer-Azure*-v0` "
     "(`config={\"defer_s\": …}` elsewhere)", "distllm/RequestRoutingDefer-AzureConvSwarm-v0"),
    ("BlockPlacement: `distllm/BlockPlacement-v0` and its preset ids", "distllm/BlockPlacement-v0"),
    ("BlockPlacement, sessions action: `distllm/BlockPlacementSessions-*-v0`", "distllm/BlockPlacementSessions-v0"),
    ("ClientSplit: `distllm/ClientSplit-v0` and its preset ids", "distllm/ClientSplit-v0"),
    ("SwarmPlacement: `distllm/SwarmPlacement-v0` and its preset ids", "distllm/SwarmPlacement-v0"),
]


def _layout(env_id: str) -> str:
    env = gym.make(env_id, disable_env_checker=True)
    try:
        return env.unwrapped.layout.markdown()
    finally:
        env.close()


def kinds() -> list[tuple[str, str]]:
    """The documented kinds whose id is registered (an id another change has not landed yet is left out)."""
    ids = set(registered_ids())
    return [(h, i) for h, i in KINDS if i in ids]


def render() -> str:
    """The generated block (no markers): one heading and table per env kind, default config
    (S = 64 servers, K = 8 candidates, max_time_s = 10 000 s)."""
    parts = []
    for heading, env_id in kinds():
        parts.append(f"### {heading}\n\n{_layout(env_id)}\n")
    return "\n".join(parts)


def _documented() -> str:
    text = DOC.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"{DOC} lacks the generated layouts markers"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def test_docs_envs_md_shows_every_layout():
    want = render().strip("\n")
    got = _documented()
    if got != want:
        pytest.fail(f"docs/envs.md's layout tables differ from ObsLayout.markdown(); run "
                    f"`python tests/test_env_layout_docs.py --write`. Expected block:\n{want}")


def test_every_registered_id_has_a_documented_layout():
    documented = {_layout(i) for _, i in kinds()}
    for env_id in registered_ids():
        assert _layout(env_id) in documented, env_id


def write() -> None:
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{render().strip()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    else:
        print(render())

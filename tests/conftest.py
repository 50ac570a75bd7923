"""Shared fixtures for the core tests."""

from __future__ import annotations

import copy

import pytest
import yaml

from distllm_env.scenario import preset_path


def preset_dict(name: str) -> dict:
    """The raw YAML mapping of a shipped preset (a fresh copy each time)."""
    return copy.deepcopy(yaml.safe_load(preset_path(name).read_text()))


@pytest.fixture
def tiny_dict() -> dict:
    return preset_dict("tiny")

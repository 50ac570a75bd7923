"""Shared fixtures for the core tests, and the hypothesis profile.

Hypothesis: when the environment variable ``CI`` is set (``CI=true`` in our CI), the ``ci`` profile
is loaded — derandomized (the examples are a fixed function of each test, so a CI run is
reproducible), no deadline, and a failing example is printed with its reproduction blob.  Local runs
keep hypothesis' default random exploration, so they keep finding new cases; pin a case they find
with ``@example`` (or a plain regression test) before fixing it.
"""

from __future__ import annotations

import copy
import os

import pytest
import yaml
from hypothesis import settings

from distllm_env.scenario import preset_path

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def preset_dict(name: str) -> dict:
    """The raw YAML mapping of a shipped preset (a fresh copy each time)."""
    return copy.deepcopy(yaml.safe_load(preset_path(name).read_text()))


@pytest.fixture
def tiny_dict() -> dict:
    return preset_dict("tiny")

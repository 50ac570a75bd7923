"""Deprecated alias of :mod:`distllm_env.registry` (the policy name registry).

.. deprecated::
    Import from :mod:`distllm_env.registry` instead; this module was renamed so it is not confused
    with :mod:`distllm_env.envs.policies` (the env-driving baseline wrappers).  ``load_object`` now
    lives in :mod:`distllm_env.imports`.  Every public name below keeps working.
"""

from __future__ import annotations

from .imports import load_object
from .registry import (DEFAULT_PLACEMENT_ORDER, DEFAULT_ROUTING_ORDER, FAMILIES, PLACEMENT_POLICIES, PRESETS,
                       ROUTING_POLICIES, check_scenario_policies, default_placement, default_routing,
                       family_delay_s, family_of, is_available, make_placement, make_routing, resolve_placement,
                       resolve_routing, split_policy_spec)

__all__ = [
    "DEFAULT_PLACEMENT_ORDER", "DEFAULT_ROUTING_ORDER", "FAMILIES", "PLACEMENT_POLICIES", "PRESETS",
    "ROUTING_POLICIES", "check_scenario_policies", "default_placement", "default_routing", "family_delay_s",
    "family_of", "is_available", "load_object", "make_placement", "make_routing", "resolve_placement",
    "resolve_routing", "split_policy_spec",
]

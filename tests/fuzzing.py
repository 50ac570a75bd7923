"""Scenario fuzzer (issue 9): mutated scenario files built from the shipped presets.

Shared by the bounded CI test (``tests/test_fuzz.py``) and the long run (``benchmarks/fuzz.py``); a
development tool, not part of the package.  The mutations are in :mod:`fuzz_values` (parsed data) and
:mod:`fuzz_text` (text and bytes), the case types in :mod:`fuzz_core`, the runner in :mod:`fuzz_runner`.

A case is fully determined by ``(seed, index)``: :func:`make_case` draws it from
``numpy.random.default_rng([seed, index])``, so any case can be regenerated alone.  Each case starts
from one preset's YAML (``workload.num_requests`` capped at :data:`MAX_REQUESTS` so that runs that
should succeed are fast), applies 1–3 mutations, some to the parsed data, some to the emitted text or
bytes (duplicate keys, alias bombs, non-UTF-8, syntax errors), and may add ``--set`` overrides,
auxiliary files (``.graph`` topologies, CSV traces, PETALS JSON) and an explicit policy choice.

The mutation kinds are those of issue 9: numbers without bounds, type swaps, key deletion, unknown keys
and names, duplicate keys, deep nesting, alias bombs, recursive aliases, non-UTF-8 bytes, syntax errors,
topology and workload edits, policy import paths (the security payloads create a marker file; see
:data:`MARKER`), and ``--set`` overrides.  ``Case.must_fail`` is set when no correct loader may accept
the case (success is then the outcome ``silent-accept``); ``Case.must_succeed`` when the case only
rewrites a preset without changing its meaning (an error is then the outcome ``wrongly-refused``).
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import yaml

from distllm_env.policies import PLACEMENT_POLICIES, ROUTING_POLICIES
from distllm_env.scenario import list_presets, preset_path
from fuzz_core import _SLOT, MARKER, MAX_REQUESTS, Case, Draft, Mutation
from fuzz_text import (m_alias_bomb, m_deep_nesting, m_duplicate_key, m_equivalent, m_non_utf8, m_not_a_mapping,
                       m_recursive_alias, m_syntax_error)
from fuzz_values import (m_calibration, m_key_delete, m_numeric, m_perturb, m_policy_import, m_policy_options,
                         m_set_override, m_topology, m_type_swap, m_unknown_key, m_unknown_name, m_workload)

MUTATIONS: dict[str, Callable[[Draft], None]] = {
    "numeric": m_numeric, "perturb": m_perturb, "equivalent": m_equivalent, "type-swap": m_type_swap,
    "key-delete": m_key_delete, "unknown-key": m_unknown_key,
    "unknown-name": m_unknown_name, "duplicate-key": m_duplicate_key, "alias-bomb": m_alias_bomb,
    "recursive-alias": m_recursive_alias, "deep-nesting": m_deep_nesting, "non-utf8": m_non_utf8,
    "syntax-error": m_syntax_error, "not-a-mapping": m_not_a_mapping, "topology": m_topology,
    "workload": m_workload, "calibration": m_calibration, "policy-import": m_policy_import,
    "policy-options": m_policy_options, "set-override": m_set_override,
}
#: relative weights of the mutation kinds
WEIGHTS = {"numeric": 4, "perturb": 4, "equivalent": 2, "type-swap": 3, "key-delete": 2, "unknown-key": 1,
           "unknown-name": 2, "duplicate-key": 1,
           "alias-bomb": 1, "recursive-alias": 1, "deep-nesting": 1, "non-utf8": 1, "syntax-error": 1,
           "not-a-mapping": 0.5, "topology": 2, "workload": 2, "calibration": 0.5, "policy-import": 1.5,
           "policy-options": 1, "set-override": 2.5}

#: application order: replacing/deleting edits first, then those that make the case invalid (so a later
#: edit cannot silently undo an earlier one and leave ``must_fail`` wrong), text- and byte-level last
ORDER = ["key-delete", "type-swap", "perturb", "policy-options", "calibration", "workload", "topology", "numeric",
         "unknown-key", "unknown-name", "policy-import", "set-override", "duplicate-key", "alias-bomb",
         "recursive-alias", "deep-nesting", "non-utf8", "syntax-error", "not-a-mapping", "equivalent"]
assert sorted(ORDER) == sorted(MUTATIONS)


# --------------------------------------------------------------------------------------------------
# Case construction
# --------------------------------------------------------------------------------------------------

_PRESET_CACHE: dict[str, dict] = {}


def preset_data(name: str) -> dict:
    if name not in _PRESET_CACHE:
        _PRESET_CACHE[name] = yaml.safe_load(preset_path(name).read_text())
    return copy.deepcopy(_PRESET_CACHE[name])


def make_case(seed: int, index: int, presets: list[str] | None = None) -> Case:
    """Case ``index`` of the run with ``seed`` (deterministic; presets cycle so all are covered)."""
    presets = presets or list_presets()
    rng = np.random.default_rng([seed, index])
    case = Case(seed=seed, index=index, preset=presets[index % len(presets)])
    data = preset_data(case.preset)
    w = data.get("workload")
    if isinstance(w, dict) and (w.get("arrival", "poisson") == "poisson"      # keep runs that should succeed small
                                or str(w.get("trace", "")).startswith("azure-")):   # (azure-* preset windows)
        w["num_requests"] = min(MAX_REQUESTS, w.get("num_requests") or MAX_REQUESTS)
    d = Draft(rng, case, data)
    r = rng.random()
    if r < 0.2:
        case.placement = d.choice(sorted(PLACEMENT_POLICIES))
        case.routing = d.choice(sorted(ROUTING_POLICIES))
        if case.placement == "milp":
            case.overrides.append("policy_defaults.options.milp.time_limit_s=2")
    kinds = list(WEIGHTS)
    p = np.array([WEIGHTS[k] for k in kinds], dtype=float)
    drawn = [kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
             for _ in range(int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15])))]
    for kind in sorted(drawn, key=ORDER.index):   # edits that make a case invalid come after the others
        MUTATIONS[kind](d)
    case.path = str(rng.choice(["api", "cli", "env"], p=[0.75, 0.2, 0.05]))
    # the routing env ignores explicit policies and the scenario's routing policy: keep such cases off it
    if case.path == "env" and (case.placement or case.routing or any(
            m.kind == "policy-import" and "routing" in m.detail + m.path for m in case.mutations)):
        case.path = "api"
    text = yaml.safe_dump(d.data, sort_keys=False, allow_unicode=True, width=10 ** 9)
    for i, slot in enumerate(d.slots):
        token = _SLOT.format(i)
        text = text.replace(f"'{token}'", slot).replace(token, slot)
    for edit in d.text_edits:
        text = edit(text)
    raw = text.encode("utf-8")
    for bedit in d.byte_edits:
        raw = bedit(raw)
    case.data = raw
    return case


def make_cases(seed: int, n: int, start: int = 0) -> list[Case]:
    presets = list_presets()
    return [make_case(seed, i, presets) for i in range(start, start + n)]


__all__ = ["Case", "MARKER", "MUTATIONS", "Mutation", "make_case", "make_cases"]


"""Fuzz-case types and tree helpers shared by the mutation modules (:mod:`fuzz_values`,
:mod:`fuzz_text`) and :mod:`fuzzing`, which assembles cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import yaml

#: cap on ``workload.num_requests`` in cases whose mutation does not target it
MAX_REQUESTS = 20
#: replaced, when a case is run, by the absolute path of a file that must never be created
MARKER = "__FUZZ_MARKER__"
_SLOT = "@@FUZZSLOT{}@@"
_BYTES = "FUZZBYTES"


@dataclass(frozen=True)
class Mutation:
    kind: str     # mutation kind (a key of MUTATIONS)
    path: str     # dotted field path, or "<text>" / "<bytes>" / "--set"
    detail: str   # short description of the edit
    must_fail: bool = False
    keeps_valid: bool = False   # the edit leaves a scenario that must still run (see Case.must_succeed)


@dataclass
class Case:
    """One fuzz case.  ``data`` is the scenario file's bytes (with :data:`MARKER` unexpanded)."""

    seed: int
    index: int
    preset: str
    mutations: list[Mutation] = field(default_factory=list)
    data: bytes = b""
    aux_files: dict[str, bytes] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    placement: str | None = None
    routing: str | None = None
    path: str = "api"            # api | cli | env
    must_fail: bool = False
    security: bool = False

    @property
    def must_succeed(self) -> bool:
        """Only edits that keep a preset (which runs) runnable, with the scenario's own policies."""
        return bool(self.mutations) and all(m.keeps_valid for m in self.mutations) \
            and self.placement is None and self.routing is None

    @property
    def kinds(self) -> str:
        return "+".join(sorted({m.kind for m in self.mutations})) or "none"

    def describe(self) -> str:
        parts = [f"{m.kind}@{m.path}{m.detail}" for m in self.mutations]
        if self.overrides:
            parts.append("--set " + " --set ".join(self.overrides))
        if self.placement or self.routing:
            parts.append(f"placement={self.placement} routing={self.routing}")
        return f"[{self.preset}] " + "; ".join(parts)


class Draft:
    """Mutable state while a case is built: the parsed data plus text-level edits."""

    def __init__(self, rng: np.random.Generator, case: Case, data: dict):
        self.rng = rng
        self.case = case
        self.data = data
        self.slots: list[str] = []                       # flow YAML text for each slot
        self.text_edits: list[Callable[[str], str]] = []
        self.byte_edits: list[Callable[[bytes], bytes]] = []

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def slot(self, text: str) -> str:
        self.slots.append(text)
        return _SLOT.format(len(self.slots) - 1)

    def note(self, kind: str, path: str, detail: str, must_fail: bool = False, keeps_valid: bool = False) -> None:
        self.case.mutations.append(Mutation(kind, path, detail, must_fail, keeps_valid))
        self.case.must_fail |= must_fail


# --------------------------------------------------------------------------------------------------
# Tree helpers
# --------------------------------------------------------------------------------------------------

def _walk(node: Any, path: tuple = ()):
    """Yield ``(path, value)`` for every node below the root (paths are key/index tuples)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield path + (k,), v
        yield from _walk(v, path + (k,))


def _get(data, path):
    for k in path:
        data = data[k]
    return data


def _set(data, path, value):
    _get(data, path[:-1])[path[-1]] = value


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10 ** 9).strip().removesuffix("...").strip()


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


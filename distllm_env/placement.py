"""Block placements, cache policies and placement results (docs/contracts.md §1, §7).

A placement gives every server one contiguous, 0-based block range ``(start, count)``, hosting
blocks ``start … start+count−1``; ``count == 0`` means the server hosts nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import DistLLMError, PlacementError
from .perf import leftover_kv_capacity_bytes


@dataclass(frozen=True)
class Placement:
    """Per server ``(start, count)``; ``num_blocks`` is the model's L."""

    starts: tuple[int, ...]
    counts: tuple[int, ...]
    num_blocks: int

    def __post_init__(self):
        object.__setattr__(self, "starts", tuple(int(s) for s in self.starts))
        object.__setattr__(self, "counts", tuple(int(c) for c in self.counts))
        if len(self.starts) != len(self.counts):
            raise PlacementError(f"placement has {len(self.starts)} starts but {len(self.counts)} counts")
        for j, (s, c) in enumerate(zip(self.starts, self.counts)):
            if c < 0:
                raise PlacementError(f"server {j}: block count {c} is negative")
            if c > 0 and (s < 0 or s + c > self.num_blocks):
                raise PlacementError(
                    f"server {j}: blocks {s}-{s + c - 1} fall outside the model's blocks 0-{self.num_blocks - 1}")

    @classmethod
    def _masked(cls, valid: "Placement", counts: tuple[int, ...]) -> "Placement":
        """Internal: ``valid`` with some servers' counts set to 0 (``counts``: plain ints, each 0 or
        ``valid``'s count), built without re-validation: every range of a valid placement stays valid
        when servers are emptied.  Used by the churn engine per server event (live/churn.py)."""
        p = object.__new__(cls)
        object.__setattr__(p, "starts", valid.starts)
        object.__setattr__(p, "counts", counts)
        object.__setattr__(p, "num_blocks", valid.num_blocks)
        return p

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, int]], num_blocks: int) -> "Placement":
        pairs = list(pairs)
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), num_blocks)

    @property
    def num_servers(self) -> int:
        return len(self.counts)

    @cached_property
    def start_array(self) -> np.ndarray:
        return np.asarray(self.starts, dtype=np.int64)

    @cached_property
    def count_array(self) -> np.ndarray:
        return np.asarray(self.counts, dtype=np.int64)

    @cached_property
    def end_array(self) -> np.ndarray:
        """Exclusive end a_j + m_j (0-based), i.e. the next block needed after this server."""
        return self.start_array + self.count_array

    def pairs(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.counts))

    def coverage(self) -> np.ndarray:
        """Number of servers hosting each block."""
        cov = np.zeros(self.num_blocks + 1, dtype=np.int64)
        for s, c in zip(self.starts, self.counts):
            if c > 0:
                cov[s] += 1
                cov[s + c] -= 1
        return np.cumsum(cov)[: self.num_blocks]

    def uncovered_ranges(self, first_block: int = 0) -> tuple[tuple[int, int], ...]:
        """Inclusive ranges of blocks ≥ ``first_block`` hosted by no server."""
        cov = self.coverage()
        out, run_start = [], None
        for b in range(first_block, self.num_blocks):
            if cov[b] == 0 and run_start is None:
                run_start = b
            elif cov[b] > 0 and run_start is not None:
                out.append((run_start, b - 1))
                run_start = None
        if run_start is not None:
            out.append((run_start, self.num_blocks - 1))
        return tuple(out)

    def check_covered(self, first_block: int = 0) -> None:
        """Raise :class:`PlacementError` naming every uncovered block range."""
        gaps = self.uncovered_ranges(first_block)
        if gaps:
            text = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in gaps)
            raise PlacementError(f"placement leaves blocks {text} uncovered (no server hosts them)", gaps)

    def describe(self) -> str:
        return " ".join(f"s{j}:{s}-{s + c - 1}" for j, (s, c) in enumerate(self.pairs()) if c > 0)


_FIXED_POOL = re.compile(r"^fixed_pool\((\d+)\)$")


@dataclass(frozen=True)
class CachePolicy:
    """How much KV-cache memory a server offers sessions (docs/contracts.md §7).

    ``leftover``: all memory left after the weights, M_j − s_m·m_j.
    ``fixed_pool(T)``: PETALS' fixed pool of T tokens per hosted block, m_j · 2·(d/g)·T·2 bytes
    (petals ``server/server.py``: attn_cache_tokens 4096, or 16384 for GQA models), never more than
    the leftover memory.
    """

    kind: str = "leftover"
    tokens_per_block: int | None = None

    def __post_init__(self):
        if self.kind not in ("leftover", "fixed_pool"):
            raise ValueError(f"cache policy kind must be 'leftover' or 'fixed_pool', got {self.kind!r}")
        if self.kind == "fixed_pool" and (self.tokens_per_block is None or self.tokens_per_block <= 0):
            raise ValueError("fixed_pool cache policy needs a positive tokens_per_block")

    @classmethod
    def parse(cls, text: "str | CachePolicy") -> "CachePolicy":
        """``'leftover'`` or ``'fixed_pool(TOKENS)'`` (or a :class:`CachePolicy`, returned as is).

        Raises:
            ValueError: any other text."""
        if isinstance(text, CachePolicy):
            return text
        if text == "leftover":
            return cls()
        m = _FIXED_POOL.match(str(text).strip())
        if m:
            return cls("fixed_pool", int(m.group(1)))
        raise ValueError(f"cache policy must be 'leftover' or 'fixed_pool(TOKENS)', got {text!r}")

    def __str__(self) -> str:
        return "leftover" if self.kind == "leftover" else f"fixed_pool({self.tokens_per_block})"

    def kv_capacity_bytes(self, memory_bytes, block_bytes: int, counts, kv_bytes_per_token_per_block: int):
        """Per-server KV capacity in bytes (array over servers)."""
        leftover = leftover_kv_capacity_bytes(memory_bytes, block_bytes, counts)
        if self.kind == "leftover":
            return leftover
        pool = np.asarray(counts, dtype=np.int64) * int(kv_bytes_per_token_per_block) * int(self.tokens_per_block)
        return np.minimum(pool, leftover)


@dataclass(frozen=True)
class PlacementResult:
    """What a placement policy returns: the placement, the cache policy sessions see, diagnostics
    (e.g. CG-BP's K and Theorem-2 bound, PETALS' join order, a solver's gap)."""

    placement: Placement
    cache_policy: CachePolicy = field(default_factory=CachePolicy)
    diagnostics: Mapping[str, Any] = field(default_factory=dict)


def check_memory(placement: Placement, memory_bytes: Sequence[int], block_bytes: int,
                 max_blocks: Sequence[int | None]) -> None:
    """Raise :class:`PlacementError` if a server's weights exceed its memory or its block cap."""
    for j, c in enumerate(placement.counts):
        if c == 0:
            continue
        cap = max_blocks[j]
        if cap is not None and c > cap:
            raise PlacementError(f"server {j}: hosts {c} blocks but its GPU is capped at {cap}")
        if c * block_bytes > memory_bytes[j]:
            raise PlacementError(
                f"server {j}: {c} blocks need {c * block_bytes / 1e9:.2f} GB of weights but it has "
                f"{memory_bytes[j] / 1e9:.2f} GB")




def run_kv_capacity_bytes(instance, placement_result: "PlacementResult") -> np.ndarray:
    """Check that a placement can run on an instance and return each server's KV capacity for the run
    (bytes, shape ``(num_servers,)``, int64): the cache policy's capacity after the hosted blocks'
    weights (docs/model.md §2.3).  Shared by both engines.

    Raises:
        DistLLMError: the placement has another number of servers or blocks than the instance.
        PlacementError: a block is hosted by no server, or a server's blocks do not fit its memory."""
    placement = placement_result.placement
    if placement.num_servers != instance.num_servers:
        raise DistLLMError(f"placement has {placement.num_servers} servers, the instance {instance.num_servers}")
    if placement.num_blocks != instance.num_blocks:
        raise DistLLMError(f"placement is for {placement.num_blocks} blocks, the model has {instance.num_blocks}")
    placement.check_covered()
    check_memory(placement, instance.memory_bytes, instance.block_bytes, instance.max_blocks)
    return np.asarray(placement_result.cache_policy.kv_capacity_bytes(
        instance.memory_bytes, instance.block_bytes, placement.count_array,
        instance.kv_bytes_per_token_per_block), dtype=np.int64)

__all__ = ["CachePolicy", "Placement", "PlacementResult", "check_memory", "run_kv_capacity_bytes"]

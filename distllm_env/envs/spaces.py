"""Observation layouts: a flat ``Dict`` of fixed-size float32 ``Box``es with finite bounds.

Every environment declares its observation as a list of :class:`Feature` s (name, length, bounds,
unit, meaning).  :class:`ObsLayout` turns that list into the ``gymnasium.spaces.Dict`` the env
exposes, allocates zero-filled arrays for one observation, and clips a finished observation into
its bounds, so an observation is always inside its space (``check_env`` and SB3 insist on it).
The same list generates the tables of ``docs/envs.md`` (:meth:`ObsLayout.markdown`).

Conventions (docs/envs.md): one level of keys only (SB3 rejects nested ``Dict``),
1-D boxes only (SB3 warns on other shapes; a K × S matrix is flattened row-major), ``float32``,
finite ``low``/``high``; padded entries are 0 and described by a validity mask feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from gymnasium import spaces


@dataclass(frozen=True)
class Feature:
    """One key of a ``Dict`` observation: a 1-D float32 box of ``size`` entries in [low, high]."""

    name: str
    size: int
    low: float
    high: float
    unit: str
    doc: str

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"feature {self.name!r}: size must be ≥ 1, got {self.size}")
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"feature {self.name!r}: bounds must be finite with low < high, got "
                             f"[{self.low}, {self.high}]")


class ObsLayout:
    """The observation layout of one env (fixed by its config, never by the scenario)."""

    def __init__(self, features: Sequence[Feature]):
        """The layout of ``features`` (one observation key each).

        Raises:
            ValueError: two features share a name."""
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate observation keys in {names}")
        self.features = tuple(features)
        self._by_name = {f.name: f for f in self.features}
        self.size = sum(f.size for f in self.features)
        self._slices = {}
        pos = 0
        for f in self.features:
            self._slices[f.name] = slice(pos, pos + f.size)
            pos += f.size
        self._low = np.concatenate([np.full(f.size, f.low, dtype=np.float32) for f in self.features])
        self._high = np.concatenate([np.full(f.size, f.high, dtype=np.float32) for f in self.features])

    def space(self) -> spaces.Dict:
        return spaces.Dict({
            f.name: spaces.Box(low=np.float32(f.low), high=np.float32(f.high), shape=(f.size,), dtype=np.float32)
            for f in self.features
        })

    def zeros(self) -> dict[str, np.ndarray]:
        """A fresh observation with every entry 0: one new float32 buffer, and per key a view of it
        (so :meth:`finish` clips the whole observation in two ufunc calls)."""
        buf = np.zeros(self.size, dtype=np.float32)
        return {name: buf[sl] for name, sl in self._slices.items()}

    def finish(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Clip every entry into its feature's bounds in place (NaN → low, ±inf → the bound) and
        return ``obs`` (made by :meth:`zeros`)."""
        buf = next(iter(obs.values())).base
        if buf is None or buf.size != self.size:   # not made by zeros(): clip key by key
            for name, arr in obs.items():
                sl = self._slices[name]
                np.fmax(arr, self._low[sl], out=arr)
                np.fmin(arr, self._high[sl], out=arr)
            return obs
        np.fmax(buf, self._low, out=buf)      # fmax/fmin ignore NaN: NaN → low
        np.fmin(buf, self._high, out=buf)
        return obs

    def markdown(self) -> str:
        """A markdown table of the layout (used for docs/envs.md)."""
        rows = ["| key | shape | range | unit | meaning |", "|---|---|---|---|---|"]
        for f in self.features:
            rows.append(f"| `{f.name}` | ({f.size},) | [{f.low:g}, {f.high:g}] | {f.unit} | {f.doc} |")
        return "\n".join(rows)


__all__ = ["Feature", "ObsLayout"]

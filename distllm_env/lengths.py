"""Token-length distributions of a workload (``prompt_tokens`` / ``output_tokens``, docs/scenarios.md).

:class:`LengthDist` is used by the ``workload:`` section of a scenario and by the request mix of its
``split:`` section; :func:`parse_length` validates one from YAML.  Lengths are bounded by
:data:`~distllm_env.limits.MAX_TOKENS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from . import validation as v
from .errors import ScenarioError
from .limits import MAX_CHOICES, MAX_TOKENS


@dataclass(frozen=True)
class LengthDist:
    """A token-length distribution: ``fixed`` (value), ``uniform`` (low..high inclusive), ``choice``
    (values with optional weights) or ``lognormal`` (median, sigma, clipped to low..high)."""

    dist: str
    value: int | None = None
    low: int | None = None
    high: int | None = None
    values: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    median: float | None = None
    sigma: float | None = None

    @property
    def max(self) -> int:
        if self.dist == "fixed":
            return int(self.value)
        if self.dist == "choice":
            return int(max(self.values))
        return int(self.high)

    @property
    def min(self) -> int:
        if self.dist == "fixed":
            return int(self.value)
        if self.dist == "choice":
            return int(min(self.values))
        return int(self.low)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` lengths (tokens), shape (n,), int64."""
        if self.dist == "fixed":
            return np.full(n, int(self.value), dtype=np.int64)
        if self.dist == "uniform":
            return rng.integers(self.low, self.high + 1, size=n).astype(np.int64)
        if self.dist == "choice":
            p = None
            if self.weights:
                w = np.asarray(self.weights, dtype=float)
                p = w / w.sum()
            return rng.choice(np.asarray(self.values, dtype=np.int64), size=n, p=p)
        x = np.rint(self.median * np.exp(self.sigma * rng.standard_normal(n)))
        return np.clip(x, self.low, self.high).astype(np.int64)


def parse_length(value: Any, path: str) -> LengthDist:
    """Validate a length: an integer (fixed) or a mapping with ``dist``.

    Raises:
        ScenarioError: naming ``path`` (or a field under it)."""
    if not isinstance(value, Mapping):
        return LengthDist("fixed", value=v.check_int(value, path, minimum=1, maximum=MAX_TOKENS))
    d = v.mapping(value, path)
    dist = v.string(d, "dist", path, choices=("fixed", "uniform", "choice", "lognormal"))
    if dist == "fixed":
        v.check_keys(d, path, ("dist", "value"), required=("value",))
        return LengthDist("fixed", value=v.integer(d, "value", path, minimum=1, maximum=MAX_TOKENS))
    if dist == "uniform":
        v.check_keys(d, path, ("dist", "low", "high"), required=("low", "high"))
        low = v.integer(d, "low", path, minimum=1, maximum=MAX_TOKENS)
        high = v.integer(d, "high", path, minimum=low, maximum=MAX_TOKENS)
        return LengthDist("uniform", low=low, high=high)
    if dist == "choice":
        v.check_keys(d, path, ("dist", "values", "weights"), required=("values",))
        values = tuple(v.check_int(x, f"{path}.values.{i}", minimum=1, maximum=MAX_TOKENS)
                       for i, x in enumerate(v.sequence(d["values"], f"{path}.values", MAX_CHOICES)))
        if not values:
            raise ScenarioError(f"{path}.values", "expected at least one value")
        weights = ()
        if "weights" in d:
            weights = tuple(v.check_number(x, f"{path}.weights.{i}", minimum=0, maximum=1e12)
                            for i, x in enumerate(v.sequence(d["weights"], f"{path}.weights", MAX_CHOICES)))
            if len(weights) != len(values):
                raise ScenarioError(f"{path}.weights", f"expected {len(values)} weights (one per value), got {len(weights)}")
            if sum(weights) <= 0:
                raise ScenarioError(f"{path}.weights", "weights must not all be zero")
        return LengthDist("choice", values=values, weights=weights)
    v.check_keys(d, path, ("dist", "median", "sigma", "low", "high"), required=("median", "sigma", "low", "high"))
    low = v.integer(d, "low", path, minimum=1, maximum=MAX_TOKENS)
    return LengthDist("lognormal", median=v.number(d, "median", path, minimum=1, maximum=MAX_TOKENS),
                      sigma=v.number(d, "sigma", path, minimum=0, maximum=10),
                      low=low, high=v.integer(d, "high", path, minimum=low, maximum=MAX_TOKENS))


__all__ = ["LengthDist", "parse_length"]

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


#: ``Request.rejection`` / per-request ``reason`` of a request longer than the model allows.
EXCEEDS_MAX_SEQUENCE = "exceeds_max_sequence"
#: Values of ``workload.over_length``.
OVER_LENGTH_MODES = ("reject", "truncate")


@dataclass(frozen=True, eq=False)
class AdmittedLengths:
    """Result of :func:`admit_lengths`, arrays of shape (n,): ``output_tokens`` (int64, after any
    truncation), ``declared_output_tokens`` (int64, what the client declares at session open),
    ``rejected`` and ``truncated`` (bool)."""

    output_tokens: np.ndarray
    declared_output_tokens: np.ndarray
    rejected: np.ndarray
    truncated: np.ndarray

    @property
    def admitted(self) -> np.ndarray:
        return ~self.rejected


def admit_lengths(prompt_tokens: np.ndarray, output_tokens: np.ndarray, max_sequence_tokens: int,
                  over_length: str = "reject", output_tokens_known: bool = True,
                  max_length: int | None = None) -> AdmittedLengths:
    """THE over-length check: every request length (YAML distributions, CSV and Azure traces,
    ``--set`` overrides) goes through here (docs/scenarios.md, "Over-length requests").

    With known output lengths (``output_tokens_known``) the limit L is the model's maximum sequence
    ``max_sequence_tokens``.  A request with prompt + output > L is rejected (``over_length:
    reject``) or its output is cut to L − prompt (``truncate``); a prompt ≥ L (no room for one output
    token) is rejected either way.  The declared output is the true one.

    With unknown output lengths the client declares the session's total length ``max_length``
    (PETALS ``max_length``, default L; the server rejects ``max_length`` > its
    ``inference_max_length`` and reserves batch × max_length of K/V up front — PETALS
    ``src/petals/server/handler.py``; docs/model.md).  The declared
    output is ``max_length − prompt``; a prompt ≥ max_length is rejected; a true output longer than the
    declared one stops at max_length and is counted truncated, whatever ``over_length`` says (the client
    cannot know in advance).

    Args:
        prompt_tokens, output_tokens: shape (n,), tokens, ≥ 1.
    Returns:
        :class:`AdmittedLengths`; rejected requests keep their true output and declared output.
    Raises:
        ValueError: ``over_length`` not in ``OVER_LENGTH_MODES`` (the scenario parser checks first)."""
    if over_length not in OVER_LENGTH_MODES:
        raise ValueError(f"over_length must be one of {OVER_LENGTH_MODES}, got {over_length!r}")
    p = np.asarray(prompt_tokens, dtype=np.int64)
    o = np.asarray(output_tokens, dtype=np.int64)
    if output_tokens_known:
        limit = int(max_sequence_tokens)
        too_long = p + o > limit
        rejected = p >= limit
        if over_length == "reject":
            rejected = rejected | too_long
        truncated = too_long & ~rejected
        out = np.where(truncated, limit - p, o)
        declared = out.copy()
    else:
        limit = int(max_length if max_length is not None else max_sequence_tokens)
        rejected = p >= limit
        declared = np.maximum(limit - p, 0)
        truncated = ~rejected & (o > declared)
        out = np.where(truncated, declared, o)
    return AdmittedLengths(output_tokens=out.astype(np.int64), declared_output_tokens=declared.astype(np.int64),
                           rejected=rejected, truncated=truncated)


@dataclass(frozen=True)
class PlanningLengths:
    """What a planner sizes for (tokens; docs/contracts.md §3 "Planning lengths", docs/model.md §6):

    * ``max_prompt_tokens``: the longest admitted prompt (prefill time τ^I_j(l_in), t^I_cj);
    * ``max_output_tokens``: l_max, the longest output a session may run — the longest admitted
      (truncated) output with known lengths; with unknown lengths the longest DECLARED output,
      ``max_length −`` the shortest admitted prompt (the planner cannot know any true length);
    * ``max_session_tokens``: the longest prompt + output one session holds K/V for, ≤ the model's
      maximum sequence — with unknown lengths exactly ``max_length`` (PETALS reserves
      batch × max_length up front).  CG-BP's s_c is ``kv_bytes_per_block(max_session_tokens, 0)``.

    ``max_prompt_tokens + max_output_tokens`` may exceed ``max_session_tokens``: no single request has
    both the longest prompt and the longest output."""

    max_prompt_tokens: int
    max_output_tokens: int
    max_session_tokens: int


def planning_lengths(prompt: "LengthDist | np.ndarray", output: "LengthDist | np.ndarray", max_sequence_tokens: int,
                     over_length: str = "reject", output_tokens_known: bool = True,
                     max_length: int | None = None) -> PlanningLengths:
    """The :class:`PlanningLengths` of a workload, counting only admitted requests (after
    :func:`admit_lengths`: truncated outputs, declared outputs when lengths are unknown).

    ``prompt`` / ``output`` are length distributions or per-request arrays (a trace window, shape
    (n,)).  With no admitted request, ``(1, 1, 2)``."""
    limit = int(max_sequence_tokens)
    declared_limit = int(max_length if max_length is not None else limit)
    if isinstance(prompt, LengthDist):
        p_max, p_min, o_max = prompt.max, prompt.min, output.max
        if output_tokens_known and over_length == "truncate":
            o_max = min(o_max, limit - p_min)
        session = min(p_max + o_max, limit)      # an admitted request has prompt + output ≤ limit
    else:
        adm = admit_lengths(prompt, output, limit, over_length, output_tokens_known, max_length)
        if not adm.admitted.any():
            return PlanningLengths(1, 1, 2)
        p = np.asarray(prompt, dtype=np.int64)[adm.admitted]
        p_max, p_min = int(p.max()), int(p.min())
        o_max = int(adm.output_tokens[adm.admitted].max())
        session = int((p + adm.output_tokens[adm.admitted]).max())
    if not output_tokens_known:
        # the planner knows only declared lengths: every session may run to max_length
        o_max = max(declared_limit - p_min, 1)
        session = declared_limit
    return PlanningLengths(int(p_max), int(o_max), int(session))


def planning_maxima(prompt: "LengthDist | np.ndarray", output: "LengthDist | np.ndarray", max_sequence_tokens: int,
                    over_length: str = "reject", output_tokens_known: bool = True,
                    max_length: int | None = None) -> tuple[int, int]:
    """(longest prompt, longest output) in tokens: the first two fields of :func:`planning_lengths`
    (with unknown lengths the output is the longest declared one, ``max_length −`` shortest prompt)."""
    pl = planning_lengths(prompt, output, max_sequence_tokens, over_length, output_tokens_known, max_length)
    return pl.max_prompt_tokens, pl.max_output_tokens


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


__all__ = ["EXCEEDS_MAX_SEQUENCE", "OVER_LENGTH_MODES", "AdmittedLengths", "LengthDist", "PlanningLengths", "admit_lengths",
           "planning_lengths", "planning_maxima", "parse_length"]

"""Parser of the scenario's ``workload`` section (schema: docs/scenarios.md, "Workload").

Validates arrivals (``poisson``, ``gamma``, ``mmpp`` or a ``trace`` window), length distributions,
unknown output lengths (``output_tokens_known``, ``max_length``) and the over-length rule
(``over_length``) into a :class:`~.specs.WorkloadSpec`.  Every error is a
:class:`~distllm_env.errors.ScenarioError` naming the field's dotted path.  Per-request lengths
(traces) are not errors: :func:`distllm_env.lengths.admit_lengths` rejects or truncates them.
"""

from __future__ import annotations

import math
from typing import Any

from .. import validation as v
from ..arrivals import MAX_MMPP_SOJOURNS, mmpp_expected_sojourns, mmpp_stationary_rate
from ..catalog import ModelSpec
from ..errors import ScenarioError
from ..lengths import OVER_LENGTH_MODES, parse_length
from ..limits import (MAX_ARRIVAL_RATE_PER_S, MAX_CV, MAX_DURATION_S, MAX_HORIZON_S, MAX_REQUESTS, MAX_TIME_SCALE,
                      MIN_ARRIVAL_RATE_PER_S)
from .specs import WorkloadSpec

ARRIVAL_KINDS = ("poisson", "trace", "gamma", "mmpp")
WORKLOAD_KEYS = ("arrival", "arrival_rate_per_s", "trace", "num_requests", "prompt_tokens", "output_tokens",
                 "output_tokens_known", "max_length", "over_length", "trace_offset", "time_scale", "cv",
                 "rates_per_s", "mean_sojourn_s")


def _only_with(d: dict, keys: tuple[str, ...], arrival: str, kind: str, path: str) -> None:
    for k in keys:
        if d.get(k) is not None and arrival != kind:
            raise ScenarioError(f"{path}.{k}", f"only used with 'arrival: {kind}'")


def _horizon_check(horizon_s: float, what: str, path: str) -> None:
    # arrival times must stay where float64 time resolves the model's milliseconds (limits.MAX_HORIZON_S)
    if not math.isfinite(horizon_s) or horizon_s > MAX_HORIZON_S:
        raise ScenarioError(path, f"{what} puts arrivals at about {horizon_s:.3g} s, beyond the "
                                  f"{MAX_HORIZON_S:g} s horizon where simulated times keep their resolution")


def _pair(d: dict, key: str, path: str, minimum: float, maximum: float, exclusive: bool) -> tuple[float, float]:
    if key not in d:
        raise ScenarioError(f"{path}.{key}", "required with 'arrival: mmpp' (a list of two numbers, one per state)")
    items = v.sequence(d[key], f"{path}.{key}", 2)
    if len(items) != 2:
        raise ScenarioError(f"{path}.{key}", f"expected two numbers (one per state), got {len(items)}")
    return tuple(v.check_number(x, f"{path}.{key}.{i}", minimum=minimum, exclusive_minimum=exclusive, maximum=maximum)
                 for i, x in enumerate(items))


def _trace_offset(d: dict, path: str) -> tuple[int, float]:
    if d.get("trace_offset") is None:
        return 0, 0.0
    p = f"{path}.trace_offset"
    o = v.mapping(d["trace_offset"], p)
    v.check_keys(o, p, ("requests", "seconds"))
    if len(o) != 1:
        raise ScenarioError(p, "expected exactly one of 'requests: N' or 'seconds: S'")
    if "requests" in o:
        return v.integer(o, "requests", p, minimum=0, maximum=MAX_REQUESTS), 0.0
    return 0, v.number(o, "seconds", p, minimum=0, maximum=MAX_DURATION_S)


def parse_workload(value: Any, model: ModelSpec, base_dir: str | None) -> WorkloadSpec:
    """The ``workload`` section: Poisson, Gamma or MMPP arrivals (rate, count, lengths) or a trace
    window; output-length knowledge and the over-length rule.

    Raises:
        ScenarioError: naming the offending ``workload.*`` field."""
    from ..traces import load_trace, trace_window

    path = "workload"
    d = v.mapping(value, path)
    v.check_keys(d, path, WORKLOAD_KEYS)
    d = {k: x for k, x in d.items() if x is not None}       # null (an empty --set value) = absent
    defaults = WorkloadSpec()
    arrival = v.string(d, "arrival", path, default="poisson", choices=ARRIVAL_KINDS)
    rate = v.number(d, "arrival_rate_per_s", path, default=defaults.arrival_rate_per_s, minimum=MIN_ARRIVAL_RATE_PER_S,
                    maximum=MAX_ARRIVAL_RATE_PER_S)
    if arrival == "mmpp" and "arrival_rate_per_s" in d:
        raise ScenarioError(f"{path}.arrival_rate_per_s", "not used with 'arrival: mmpp' (give rates_per_s)")
    _only_with(d, ("cv",), arrival, "gamma", path)
    _only_with(d, ("rates_per_s", "mean_sojourn_s"), arrival, "mmpp", path)
    _only_with(d, ("trace_offset",), arrival, "trace", path)
    time_scale = v.number(d, "time_scale", path, default=1.0, minimum=0, exclusive_minimum=True,
                          maximum=MAX_TIME_SCALE)
    offset_requests, offset_s = _trace_offset(d, path)
    trace = None
    cv = None
    rates: tuple[float, ...] = ()
    sojourns: tuple[float, ...] = ()
    num_requests = v.integer(d, "num_requests", path, minimum=1, maximum=MAX_REQUESTS) \
        if d.get("num_requests") is not None else None
    if arrival == "trace":
        trace = v.string(d, "trace", path)
        tr = load_trace(trace, base_dir)
        start, stop = trace_window(tr, offset_requests, offset_s, num_requests)   # raises if the window is short
        span_s = float(tr.arrival_s[stop - 1] - tr.arrival_s[start]) if stop > start else 0.0
        _horizon_check(span_s / time_scale, f"time_scale {time_scale:g}", f"{path}.time_scale")
        if tr.prompt_tokens is not None:
            for k in ("prompt_tokens", "output_tokens"):
                if d.get(k) is not None:
                    raise ScenarioError(f"{path}.{k}", f"trace {v.short(trace)} gives per-request lengths; remove this key")
        if tr.client is not None and tr.client.size and tr.client.min() < 0:
            raise ScenarioError(f"{path}.trace", "client indices in the trace must be ≥ 0")
    elif "trace" in d and d["trace"] is not None:
        raise ScenarioError(f"{path}.trace", "only used with 'arrival: trace'")
    else:
        num_requests = num_requests if num_requests is not None else defaults.num_requests
        if arrival == "gamma":
            if "cv" not in d:
                raise ScenarioError(f"{path}.cv", "required with 'arrival: gamma' (coefficient of variation of the gaps)")
            cv = v.number(d, "cv", path, minimum=0, exclusive_minimum=True, maximum=MAX_CV)
        if arrival == "mmpp":
            rates = _pair(d, "rates_per_s", path, 0, MAX_ARRIVAL_RATE_PER_S, False)
            sojourns = _pair(d, "mean_sojourn_s", path, 0, MAX_DURATION_S, True)
            if max(rates) < MIN_ARRIVAL_RATE_PER_S:
                raise ScenarioError(f"{path}.rates_per_s", "at least one state needs a positive rate")
            if mmpp_expected_sojourns(rates, sojourns, num_requests) > MAX_MMPP_SOJOURNS / 10:
                raise ScenarioError(f"{path}.rates_per_s", f"rates × sojourns too small: {num_requests} requests would "
                                                           f"need over {MAX_MMPP_SOJOURNS // 10} state changes")
            rate = mmpp_stationary_rate(rates, sojourns)     # the spec records the long-run rate
        key = "time_scale" if time_scale != 1.0 else ("rates_per_s" if arrival == "mmpp" else "arrival_rate_per_s")
        _horizon_check(num_requests / (rate * time_scale), f"{num_requests} requests at {rate * time_scale:g} req/s",
                       f"{path}.{key}")
    known = v.boolean(d, "output_tokens_known", path, default=True)
    max_length = None
    if d.get("max_length") is not None:
        if known:
            raise ScenarioError(f"{path}.max_length", "only used with 'output_tokens_known: false'")
        # PETALS servers reject a session whose max_length exceeds inference_max_length
        max_length = v.integer(d, "max_length", path, minimum=2, maximum=model.max_sequence_tokens)
    over_length = v.string(d, "over_length", path, default="reject", choices=OVER_LENGTH_MODES)
    prompt = parse_length(d["prompt_tokens"], f"{path}.prompt_tokens") \
        if d.get("prompt_tokens") is not None else defaults.prompt_tokens
    output = parse_length(d["output_tokens"], f"{path}.output_tokens") \
        if d.get("output_tokens") is not None else defaults.output_tokens
    # YAML length distributions are configuration: a prompt that never fits is an error; an output
    # that does not fit is one too unless it is truncated (over_length: truncate, or unknown lengths,
    # which stop at max_length).  Trace lengths are per-request data: admit_lengths handles them.
    limit = model.max_sequence_tokens if known else (max_length or model.max_sequence_tokens)
    if prompt.max >= limit:
        what = f"{model.name}'s maximum sequence" if known or max_length is None else "max_length"
        raise ScenarioError(f"{path}.prompt_tokens", f"longest prompt {prompt.max} exceeds {what} of {limit} tokens "
                                                     "less one output token")
    if known and over_length == "reject" and prompt.max + output.max > limit:
        raise ScenarioError(f"{path}.output_tokens",
                            f"longest prompt + output ({prompt.max} + {output.max}) exceeds {model.name}'s maximum "
                            f"sequence of {limit} tokens (or set over_length: truncate)")
    return WorkloadSpec(arrival=arrival, arrival_rate_per_s=rate, trace=trace, num_requests=num_requests,
                        prompt_tokens=prompt, output_tokens=output, output_tokens_known=known, max_length=max_length,
                        over_length=over_length, trace_offset_requests=offset_requests, trace_offset_s=offset_s,
                        time_scale=time_scale, cv=cv, rates_per_s=rates, mean_sojourn_s=sojourns)


__all__ = ["ARRIVAL_KINDS", "WORKLOAD_KEYS", "parse_workload"]

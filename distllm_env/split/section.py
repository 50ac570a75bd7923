"""The optional ``split:`` section of a scenario: the SplitLLM single-server setting (docs/split.md).

:func:`parse_split` validates the section into a :class:`SplitSpec`; the scenario parser
(:mod:`distllm_env.scenario`) calls it, and :mod:`.setting` realises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import validation as v
from ..catalog import Catalog
from ..errors import ScenarioError
from ..lengths import LengthDist, parse_length
from ..limits import MAX_BUDGET_STEPS, MAX_CHOICES, MAX_DURATION_S, MAX_REQUESTS, MAX_SERVERS
from .models import get_layer_model, layer_model_names

SPLIT_SLA_RULES = ("server_only_factor", "fixed")
_MAX_RATE = 1e15  # FLOP/s-in-TFLOPS and bit rates are checked finite after scaling; this bounds the input


@dataclass(frozen=True)
class SplitRequestSpec:
    """One request type of the split-inference mix: a layer model (``distllm_env.split`` catalog or a
    catalog block model), its prompt / output length distributions and its weight in the mix."""

    model: str
    prompt_tokens: LengthDist
    output_tokens: LengthDist
    weight: float = 1.0


@dataclass(frozen=True)
class SplitSpec:
    """The optional ``split:`` section: the SplitLLM single-server setting (docs/split.md).

    The server is geo server ``server_index`` (its GPU's dense bf16 FLOP/s × ``server_efficiency``, or
    ``server_effective_flops``; its node gives the RTT to each client unless ``rtt_s`` is set).  The
    clients are the scenario's clients that have a ``device``; their links come from the device unless
    ``uplink_bits_per_s`` / ``downlink_bits_per_s`` are set.  SLA per request: ``sla_factor`` × the
    request's server-only latency (rule ``server_only_factor``) or ``sla_fixed_s`` (rule ``fixed``).
    Time step δ = SLA / ``budget_steps`` unless ``delta_s`` is set."""

    requests: tuple[SplitRequestSpec, ...]
    sla_rule: str = "server_only_factor"
    sla_factor: float = 1.5
    sla_fixed_s: float | None = None
    budget_steps: int = 1000
    delta_s: float | None = None
    server_index: int = 0
    server_efficiency: float = 0.3
    server_effective_flops: float | None = None
    rtt_s: float | None = None
    uplink_bits_per_s: float | None = None
    downlink_bits_per_s: float | None = None
    num_requests: int = 2000
    arrival_base_per_s: float = 1.0
    arrival_factor: float = 1.1


def parse_split(value: Any, catalog: Catalog, servers) -> SplitSpec:
    """Validate the ``split:`` section (schema in docs/split.md).  ``servers`` is the scenario's
    parsed ``servers`` (a tuple when listed, so the server index can be checked here).

    Raises:
        ScenarioError: naming the field under ``split``."""
    path = "split"
    d = v.mapping(value, path)
    v.check_keys(d, path, ("server", "network", "requests", "sla", "budget_steps", "delta_ms", "num_requests",
                           "arrival_grid"), required=("requests",))
    known = sorted(set(layer_model_names()) | set(catalog.models))
    reqs = []
    items = v.sequence(d["requests"], f"{path}.requests", MAX_CHOICES)
    if not items:
        raise ScenarioError(f"{path}.requests", "expected at least one request type")
    for i, item in enumerate(items):
        rpath = f"{path}.requests.{i}"
        r = v.mapping(item, rpath)
        v.check_keys(r, rpath, ("model", "prompt_tokens", "output_tokens", "weight"), required=("model", "prompt_tokens"))
        model = v.string(r, "model", rpath)
        if model not in known:
            raise ScenarioError(f"{rpath}.model", f"unknown layer model {v.short(model)}; expected one of {known}")
        prompt = parse_length(r["prompt_tokens"], f"{rpath}.prompt_tokens")
        output = parse_length(r["output_tokens"], f"{rpath}.output_tokens") if "output_tokens" in r \
            else LengthDist("fixed", value=1)
        layer_model = get_layer_model(model, catalog, f"{rpath}.model")
        for lengths in ((prompt.max, output.max), (prompt.min, output.min)):
            layer_model.check_lengths(*lengths, path=rpath)
        reqs.append(SplitRequestSpec(model=model, prompt_tokens=prompt, output_tokens=output,
                                     weight=v.number(r, "weight", rpath, default=1.0, minimum=0, exclusive_minimum=True,
                                                     maximum=1e12)))
    spath = f"{path}.server"
    srv = v.mapping(d.get("server"), spath)
    v.check_keys(srv, spath, ("index", "efficiency", "effective_tflops"))
    server_index = v.integer(srv, "index", spath, default=0, minimum=0, maximum=MAX_SERVERS - 1)
    if isinstance(servers, tuple) and server_index >= len(servers):
        raise ScenarioError(f"{spath}.index", f"expected a server index in [0, {len(servers) - 1}], got {server_index}")
    npath = f"{path}.network"
    net = v.mapping(d.get("network"), npath)
    v.check_keys(net, npath, ("rtt_ms", "uplink_mbps", "downlink_mbps"))
    sla_path = f"{path}.sla"
    sla = v.mapping(d.get("sla"), sla_path)
    rule = v.string(sla, "rule", sla_path, default="server_only_factor", choices=SPLIT_SLA_RULES)
    if rule == "fixed":
        v.check_keys(sla, sla_path, ("rule", "ms"), required=("ms",))
    else:
        v.check_keys(sla, sla_path, ("rule", "factor"))
    gpath = f"{path}.arrival_grid"
    grid = v.mapping(d.get("arrival_grid"), gpath)
    v.check_keys(grid, gpath, ("base_per_s", "factor"))
    max_ms = MAX_DURATION_S * 1e3

    def opt(m, key, p, scale, **kw):
        if m.get(key) is None:
            return None
        return v.scaled(v.number(m, key, p, **kw), scale, v.join(p, key))

    return SplitSpec(
        requests=tuple(reqs), sla_rule=rule,
        sla_factor=v.number(sla, "factor", sla_path, default=1.5, minimum=0, exclusive_minimum=True, maximum=1e6),
        sla_fixed_s=opt(sla, "ms", sla_path, 1e-3, minimum=0, exclusive_minimum=True, maximum=max_ms),
        budget_steps=v.integer(d, "budget_steps", path, default=1000, minimum=1, maximum=MAX_BUDGET_STEPS),
        delta_s=opt(d, "delta_ms", path, 1e-3, minimum=0, exclusive_minimum=True, maximum=max_ms),
        server_index=server_index,
        server_efficiency=v.number(srv, "efficiency", spath, default=0.3, minimum=0, exclusive_minimum=True, maximum=1),
        server_effective_flops=opt(srv, "effective_tflops", spath, 1e12, minimum=0, exclusive_minimum=True,
                                   maximum=_MAX_RATE),
        rtt_s=opt(net, "rtt_ms", npath, 1e-3, minimum=0, maximum=max_ms),
        uplink_bits_per_s=opt(net, "uplink_mbps", npath, 1e6, minimum=0, exclusive_minimum=True, maximum=_MAX_RATE),
        downlink_bits_per_s=opt(net, "downlink_mbps", npath, 1e6, minimum=0, exclusive_minimum=True, maximum=_MAX_RATE),
        num_requests=v.integer(d, "num_requests", path, default=2000, minimum=1, maximum=MAX_REQUESTS),
        arrival_base_per_s=v.number(grid, "base_per_s", gpath, default=1.0, minimum=0, exclusive_minimum=True,
                                    maximum=1e6),
        arrival_factor=v.number(grid, "factor", gpath, default=1.1, minimum=1, exclusive_minimum=True, maximum=1e3),
    )


__all__ = ["SPLIT_SLA_RULES", "SplitRequestSpec", "SplitSpec", "parse_split"]

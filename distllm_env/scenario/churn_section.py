"""The ``churn:`` scenario section: servers that leave, fail and rejoin (docs/scenarios.md "Churn";
docs/contracts.md §3; semantics in docs/model.md §12).

Off by default (no section).  With it, every server alternates up and down periods drawn per seed
from the ``churn`` seed stream (:mod:`distllm_env.rng`), and/or follows a CSV event trace
``time_s,server,event`` (``event`` ∈ ``join | leave | fail``).  Any scenario with churn runs on the
live engine.  Every error is a :class:`~distllm_env.errors.ScenarioError` naming the field.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import validation as v
from ..catalog_parse import resolve_path
from ..errors import ScenarioError
from ..limits import MAX_DURATION_S, MAX_REQUESTS, MAX_SERVERS, MAX_TRACE_BYTES

DISTRIBUTIONS = ("exponential", "weibull", "pareto")
EVENTS = ("join", "leave", "fail")
DOWN_EVENTS = ("leave", "fail")
KEYS = ("distribution", "mean_uptime_s", "mean_downtime_s", "shape", "down_event", "trace", "ban_s",
        "session_timeout_s", "idle_timeout_s", "stable_servers", "load_bandwidth_gbps", "rebalance", "arrivals")
REBALANCE_KEYS = ("balance_quality", "period_s")
ARRIVAL_KEYS = ("rate_per_s", "spare_servers", "gpu_mix", "max_servers")
#: default block load bandwidth, GB/s (1e9 bytes/s): an **assumption** (a local NVMe read or a fast
#: download of the block weights; PETALS loads blocks from its disk cache or the Hugging Face hub)
DEFAULT_LOAD_BANDWIDTH_GBPS = 1.0


@dataclass(frozen=True)
class ChurnEvent:
    """One server event of a churn trace: at ``time_s`` (s) server ``server`` does ``event``."""

    time_s: float
    server: int
    event: str


@dataclass(frozen=True)
class RebalanceSpec:
    """``churn.rebalance``: PETALS' periodic rebalancing (docs/model.md §12.1).  Every ``period_s``
    (PETALS ``mean_balance_check_period`` = 60 s) each live server runs PETALS'
    ``should_choose_other_blocks`` with ``balance_quality`` (PETALS default 0.75; petals
    ``server/server.py``)."""

    balance_quality: float = 0.75
    period_s: float = 60.0


@dataclass(frozen=True)
class ArrivalSpec:
    """``churn.arrivals``: new servers arriving as a Poisson process (docs/model.md §12.1).  The
    ``spare_servers`` of the scenario start down; at each arrival (rate ``rate_per_s``, 1/s) one of
    them joins, its GPU type drawn from ``gpu_mix`` (weights; empty: every spare type equally),
    the lowest-indexed spare of that type first; at most ``max_servers`` arrive (``None``: all)."""

    rate_per_s: float
    spare_servers: tuple[int, ...]
    gpu_mix: tuple[tuple[str, float], ...] = ()
    max_servers: int | None = None


@dataclass(frozen=True)
class ChurnSpec:
    """The ``churn:`` section.  Times in seconds.

    ``distribution`` / ``mean_uptime_s`` / ``shape`` / ``mean_downtime_s``: alternating up and down
    periods per server (``None`` distribution: no drawn churn, the trace only); every period is drawn
    from ``distribution`` with the given mean and ``shape`` (Weibull k, Pareto α > 1; unused by
    ``exponential``).  ``down_event``: how a drawn up period ends (``fail`` or ``leave``).
    ``ban_s``: first ban of a failed peer (doubles on each repeat, PETALS
    ``src/petals/client/routing/sequence_manager.py``); ``session_timeout_s`` / ``idle_timeout_s``:
    PETALS' 30 min total / 5 min idle defaults (assumptions for the simulator, docs/model.md §12)."""

    distribution: str | None = "exponential"
    mean_uptime_s: float = 3600.0
    mean_downtime_s: float = 600.0
    shape: float = 1.0
    down_event: str = "fail"
    trace: tuple[ChurnEvent, ...] = ()
    ban_s: float = 15.0
    session_timeout_s: float = 1800.0
    idle_timeout_s: float = 300.0
    #: server indices the drawn process leaves alone (e.g. datacentre servers); trace events still apply
    stable_servers: tuple[int, ...] = ()
    #: block load bandwidth (GB/s): a (re)joining or moving server serves only after
    #: count · block bytes / (load_bandwidth_gbps · 1e9) s (docs/model.md §12.1); default an assumption
    load_bandwidth_gbps: float = DEFAULT_LOAD_BANDWIDTH_GBPS
    #: PETALS rebalancing (``None``: off)
    rebalance: RebalanceSpec | None = None
    #: arriving servers (``None``: none)
    arrivals: ArrivalSpec | None = None


def _parse_rebalance(value: Any, path: str) -> RebalanceSpec | None:
    if value is None:
        return None
    d = v.mapping(value, path)
    v.check_keys(d, path, REBALANCE_KEYS)
    return RebalanceSpec(
        balance_quality=v.number(d, "balance_quality", path, default=0.75, minimum=0, exclusive_minimum=True,
                                 maximum=100.0),
        period_s=v.number(d, "period_s", path, default=60.0, minimum=0, exclusive_minimum=True,
                          maximum=MAX_DURATION_S))


def _parse_arrivals(value: Any, path: str) -> ArrivalSpec | None:
    if value is None:
        return None
    d = v.mapping(value, path)
    v.check_keys(d, path, ARRIVAL_KEYS)
    if "rate_per_s" not in d or "spare_servers" not in d:
        raise ScenarioError(path, "expected 'rate_per_s' and 'spare_servers' (the servers that start down "
                                  "and arrive)")
    rate = v.number(d, "rate_per_s", path, minimum=0, exclusive_minimum=True, maximum=1e6)
    spares = [v.check_int(x, f"{path}.spare_servers.{i}", minimum=0, maximum=MAX_SERVERS - 1)
              for i, x in enumerate(v.sequence(d["spare_servers"], f"{path}.spare_servers", MAX_SERVERS))]
    if not spares or len(set(spares)) != len(spares):
        raise ScenarioError(f"{path}.spare_servers", f"expected a non-empty list of distinct server indices, "
                                                     f"got {v.short(str(spares))}")
    mix = v.mapping(d.get("gpu_mix", {}), f"{path}.gpu_mix")
    gpu_mix = tuple((str(k), v.number(mix, k, f"{path}.gpu_mix", minimum=0, exclusive_minimum=True, maximum=1e9))
                    for k in mix)
    max_servers = None
    if d.get("max_servers") is not None:
        max_servers = v.check_int(d["max_servers"], f"{path}.max_servers", minimum=0, maximum=MAX_SERVERS)
    return ArrivalSpec(rate, tuple(spares), gpu_mix, max_servers)


def parse_churn(value: Any, base_dir: str | None, path: str = "churn") -> ChurnSpec | None:
    """The ``churn`` section (``None`` when absent or null).

    Raises:
        ScenarioError: an unknown key, a distribution not in ``exponential | weibull | pareto``,
            a non-positive mean, a Pareto shape ≤ 1, or a malformed trace file (naming the line)."""
    if value is None:
        return None
    d = v.mapping(value, path)
    v.check_keys(d, path, KEYS)
    dist = d.get("distribution", "exponential")
    if dist is not None:
        dist = v.string(d, "distribution", path, default="exponential", choices=DISTRIBUTIONS)
    elif "trace" not in d:
        raise ScenarioError(f"{path}.distribution", "null (no drawn churn) needs a 'trace'")
    up = v.number(d, "mean_uptime_s", path, default=3600.0, minimum=0, exclusive_minimum=True, maximum=MAX_DURATION_S)
    down = v.number(d, "mean_downtime_s", path, default=600.0, minimum=0, exclusive_minimum=True,
                    maximum=MAX_DURATION_S)
    shape = v.number(d, "shape", path, default=1.0 if dist != "pareto" else 2.0, minimum=0.05, maximum=100.0)
    if dist == "pareto" and shape <= 1.0:
        raise ScenarioError(f"{path}.shape", f"a Pareto shape must be > 1 for a finite mean, got {shape:g}")
    down_event = v.string(d, "down_event", path, default="fail", choices=DOWN_EVENTS)
    trace: tuple[ChurnEvent, ...] = ()
    if "trace" in d:
        trace = load_churn_trace(v.check_string(d["trace"], f"{path}.trace"), base_dir, f"{path}.trace")
    stable = tuple(sorted({v.check_int(x, f"{path}.stable_servers.{i}", minimum=0, maximum=MAX_SERVERS - 1)
                           for i, x in enumerate(v.sequence(d.get("stable_servers", []), f"{path}.stable_servers",
                                                            MAX_SERVERS))}))
    return ChurnSpec(
        stable_servers=stable, distribution=dist, mean_uptime_s=up, mean_downtime_s=down, shape=shape, down_event=down_event, trace=trace,
        ban_s=v.number(d, "ban_s", path, default=15.0, minimum=0, maximum=MAX_DURATION_S),
        session_timeout_s=v.number(d, "session_timeout_s", path, default=1800.0, minimum=0, exclusive_minimum=True,
                                   maximum=MAX_DURATION_S),
        idle_timeout_s=v.number(d, "idle_timeout_s", path, default=300.0, minimum=0, exclusive_minimum=True,
                                maximum=MAX_DURATION_S),
        load_bandwidth_gbps=v.number(d, "load_bandwidth_gbps", path, default=DEFAULT_LOAD_BANDWIDTH_GBPS, minimum=0,
                                     exclusive_minimum=True, maximum=1e6),
        rebalance=_parse_rebalance(d.get("rebalance"), f"{path}.rebalance"),
        arrivals=_parse_arrivals(d.get("arrivals"), f"{path}.arrivals"))


def load_churn_trace(name: str, base_dir: str | None, path: str = "churn.trace") -> tuple[ChurnEvent, ...]:
    """Read a CSV churn trace ``time_s,server,event`` (path relative to ``base_dir``; at most
    ``MAX_TRACE_BYTES`` bytes and ``MAX_REQUESTS`` rows; times finite, in [0, MAX_DURATION_S] and
    non-decreasing; servers in [0, MAX_SERVERS); events ``join | leave | fail``).  Data only: nothing
    in the file is executed.  Raises :class:`ScenarioError` naming ``path``, the file and the line."""
    p = resolve_path(name, base_dir)
    if p.suffix.lower() != ".csv" or not p.is_file():
        raise ScenarioError(path, f"expected a .csv file, got {v.short(name)}")
    if p.stat().st_size > MAX_TRACE_BYTES:
        raise ScenarioError(path, f"{v.short(str(p))}: larger than {MAX_TRACE_BYTES} bytes")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ScenarioError(path, f"{v.short(str(p))}: not UTF-8 text") from None
    return parse_churn_csv(text, Path(p).name, path)


def parse_churn_csv(text: str, name: str, path: str = "churn.trace") -> tuple[ChurnEvent, ...]:
    """The events of a churn CSV text (see :func:`load_churn_trace`)."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or sorted(reader.fieldnames) != ["event", "server", "time_s"]:
        raise ScenarioError(path, f"{name}: CSV header must be time_s,server,event")
    out: list[ChurnEvent] = []
    last = 0.0
    try:
        for i, row in enumerate(reader, start=2):
            if i - 1 > MAX_REQUESTS:
                raise ScenarioError(path, f"{name}: more than {MAX_REQUESTS} rows")
            try:
                t, j = float(row["time_s"]), int(row["server"])
            except (TypeError, ValueError):
                raise ScenarioError(path, f"{name}: line {i}: expected numbers, got {v.short(str(dict(row)))}") from None
            ev = (row["event"] or "").strip()
            if not (math.isfinite(t) and last <= t <= MAX_DURATION_S):
                raise ScenarioError(path, f"{name}: line {i}: time_s must be finite, non-decreasing and in "
                                          f"[0, {MAX_DURATION_S:g}], got {t:g}")
            if not 0 <= j < MAX_SERVERS:
                raise ScenarioError(path, f"{name}: line {i}: server must be in [0, {MAX_SERVERS - 1}], got {j}")
            if ev not in EVENTS:
                raise ScenarioError(path, f"{name}: line {i}: event must be one of {list(EVENTS)}, got {v.short(ev)}")
            out.append(ChurnEvent(t, j, ev))
            last = t
    except csv.Error as exc:
        raise ScenarioError(path, f"{name}: line {reader.line_num}: {v.short(str(exc))}") from None
    return tuple(out)


def draw_period_s(rng: np.random.Generator, distribution: str, mean_s: float, shape: float) -> float:
    """One up or down period (s) with mean ``mean_s``.

    * ``exponential``: Exp(mean);
    * ``weibull``: scale·W(k), scale = mean / Γ(1 + 1/k);
    * ``pareto``: classic Pareto with x_m = mean·(α − 1)/α, i.e. x_m·(1 + Lomax(α)).

    All three fit volunteer-host availability (Javadi et al., "Mining for statistical models of
    availability in large-scale distributed systems", MASCOTS 2009, SETI@home traces)."""
    if distribution == "exponential":
        return float(rng.exponential(mean_s))
    if distribution == "weibull":
        return float(mean_s / math.gamma(1.0 + 1.0 / shape) * rng.weibull(shape))
    x_m = mean_s * (shape - 1.0) / shape
    return float(x_m * (1.0 + rng.pareto(shape)))


__all__ = ["ArrivalSpec", "ChurnEvent", "ChurnSpec", "DEFAULT_LOAD_BANDWIDTH_GBPS", "RebalanceSpec", "DISTRIBUTIONS", "EVENTS", "draw_period_s", "load_churn_trace",
           "parse_churn", "parse_churn_csv"]

"""Arrival traces (docs/contracts.md §3).

* The published inter-arrival traces of arXiv 2512.21884's simulator ship with the package:
  ``published-0.1`` (100 gaps, drawn at λ = 0.1 req/s) and ``published-0.5`` (50 gaps, λ = 0.5 req/s).
  They are one row of tab-separated inter-arrival gaps in **milliseconds**, the first gap 0
  (distllm_env/data/calibration/SOURCE.md).  Arrival r is the cumulative sum of gaps 0..r.
* User traces are CSV files ``arrival_s,prompt_tokens,output_tokens[,client]`` with that header.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import ScenarioError
from .limits import MAX_CLIENTS, MAX_REQUESTS, MAX_TOKENS, MAX_TRACE_BYTES

PUBLISHED_TRACES = {
    "published-0.1": ("inter_arrivals.txt", 0.1),
    "published-0.5": ("inter_arrivals_large.txt", 0.5),
}


@dataclass(frozen=True, eq=False)
class Trace:
    name: str
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None
    client: np.ndarray | None = None
    nominal_rate_per_s: float | None = None


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_published_gaps(text: str, name: str) -> Trace:
    """Read the published tab-separated gaps (ms) into cumulative arrival times (s).

    Raises:
        ScenarioError: path ``workload.trace``: a non-number, a gap < 0 or non-finite, a non-finite
            arrival time, or more than ``MAX_REQUESTS`` gaps."""
    words = text.replace("\r", "").split()
    if len(words) > MAX_REQUESTS:
        raise ScenarioError("workload.trace", f"{name}: more than {MAX_REQUESTS} arrivals")
    try:
        gaps_ms = np.array([float(x) for x in words], dtype=float)
    except ValueError as exc:
        raise ScenarioError("workload.trace", f"{name}: not a list of numbers: {_short(str(exc))}") from None
    if gaps_ms.size == 0 or np.any(gaps_ms < 0) or not np.all(np.isfinite(gaps_ms)):
        raise ScenarioError("workload.trace", f"{name}: gaps must be finite and ≥ 0")
    with np.errstate(over="ignore"):
        arrival_s = np.cumsum(gaps_ms) / 1000.0
    if not np.all(np.isfinite(arrival_s)):
        raise ScenarioError("workload.trace", f"{name}: arrival times (cumulative gaps) must stay finite")
    return Trace(name=name, arrival_s=arrival_s)


def parse_csv_trace(text: str, name: str) -> Trace:
    """Read a CSV trace ``arrival_s,prompt_tokens,output_tokens[,client]``.

    Raises:
        ScenarioError: path ``workload.trace``, naming the file and line: a bad header or value,
            arrival times not finite, < 0 or decreasing, lengths outside [1, MAX_TOKENS], clients
            outside [0, MAX_CLIENTS), or more than ``MAX_REQUESTS`` rows."""
    reader = csv.DictReader(io.StringIO(text))
    need = ["arrival_s", "prompt_tokens", "output_tokens"]
    if reader.fieldnames is None or any(k not in reader.fieldnames for k in need):
        raise ScenarioError("workload.trace", f"{name}: CSV header must be arrival_s,prompt_tokens,output_tokens[,client]")
    extra = [k for k in reader.fieldnames if k not in need + ["client"]]
    if extra:
        raise ScenarioError("workload.trace", f"{name}: unknown CSV columns {_short(str(extra))}")
    arr, pro, out, cli = [], [], [], []
    rows = enumerate(reader, start=2)
    while True:
        try:
            i, row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ScenarioError("workload.trace", f"{name}: line {reader.line_num}: {_short(str(exc))}") from None
        if i - 1 > MAX_REQUESTS:
            raise ScenarioError("workload.trace", f"{name}: more than {MAX_REQUESTS} rows")
        try:
            values = [float(row["arrival_s"]), int(row["prompt_tokens"]), int(row["output_tokens"])]
            if "client" in reader.fieldnames:
                values.append(int(row["client"]))
        except (TypeError, ValueError):
            raise ScenarioError("workload.trace", f"{name}: line {i}: expected numbers, got {_short(str(dict(row)))}") from None
        if not (1 <= values[1] <= MAX_TOKENS and 1 <= values[2] <= MAX_TOKENS):
            raise ScenarioError("workload.trace", f"{name}: line {i}: prompt_tokens and output_tokens must be in "
                                                  f"[1, {MAX_TOKENS}]")
        if len(values) == 4 and not 0 <= values[3] < MAX_CLIENTS:
            raise ScenarioError("workload.trace", f"{name}: line {i}: client must be in [0, {MAX_CLIENTS - 1}]")
        arr.append(values[0])
        pro.append(values[1])
        out.append(values[2])
        if len(values) == 4:
            cli.append(values[3])
    a = np.asarray(arr, dtype=float)
    if a.size == 0:
        raise ScenarioError("workload.trace", f"{name}: trace is empty")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(np.diff(a) < 0):
        raise ScenarioError("workload.trace", f"{name}: arrival_s must be finite, ≥ 0 and non-decreasing")
    p, o = np.asarray(pro, dtype=np.int64), np.asarray(out, dtype=np.int64)
    return Trace(name=name, arrival_s=a, prompt_tokens=p, output_tokens=o,
                 client=np.asarray(cli, dtype=np.int64) if cli else None)


@lru_cache(maxsize=32)
def load_trace(name: str, base_dir: str | None = None) -> Trace:
    """Load a shipped published trace by name, or a CSV trace by path (relative to ``base_dir``)."""
    if name in PUBLISHED_TRACES:
        file, rate = PUBLISHED_TRACES[name]
        text = resources.files("distllm_env").joinpath(f"data/traces/{file}").read_text()
        tr = parse_published_gaps(text, name)
        return Trace(name=name, arrival_s=tr.arrival_s, nominal_rate_per_s=rate)
    p = Path(name)
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    if not p.is_file():
        raise ScenarioError("workload.trace", f"unknown trace {_short(repr(name))}; expected one of {list(PUBLISHED_TRACES)} "
                                              "or a CSV file path")
    if p.stat().st_size > MAX_TRACE_BYTES:
        raise ScenarioError("workload.trace", f"{_short(str(p))}: larger than {MAX_TRACE_BYTES} bytes")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError("workload.trace", f"{_short(str(p))}: not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                                              f"offset {exc.start})") from None
    if p.suffix.lower() == ".csv":
        return parse_csv_trace(text, str(p))
    return parse_published_gaps(text, str(p))


__all__ = ["PUBLISHED_TRACES", "Trace", "load_trace", "parse_csv_trace", "parse_published_gaps"]

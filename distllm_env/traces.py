"""Arrival traces (docs/contracts.md §3).

* The published inter-arrival traces of arXiv 2512.21884's simulator ship with the package:
  ``published-0.1`` (100 gaps, drawn at λ = 0.1 req/s) and ``published-0.5`` (50 gaps, λ = 0.5 req/s).
  They are one row of tab-separated inter-arrival gaps in **milliseconds**, the first gap 0
  (distllm_env/data/calibration/SOURCE.md).  Arrival r is the cumulative sum of gaps 0..r.
* The Azure LLM inference traces 2023 (CC-BY 4.0; Patel et al., "Splitwise", ISCA 2024) ship gzipped
  as ``azure-conv-2023`` (19,366 requests) and ``azure-code-2023`` (8,819 requests)
  (distllm_env/data/traces/SOURCE.md).  Their ``TIMESTAMP`` becomes ``arrival_s`` relative to the
  first request, ``ContextTokens`` the prompt and ``GeneratedTokens`` the output length.
* User traces are CSV files ``arrival_s,prompt_tokens,output_tokens[,client]`` with that header.

No length is checked against a model here: :func:`distllm_env.lengths.admit_lengths` is the one
over-length check every request goes through (docs/scenarios.md, "Over-length requests").
"""

from __future__ import annotations

import csv
import gzip
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
#: Built-in Azure LLM inference traces 2023 (name → gzipped CSV in distllm_env/data/traces/).
AZURE_TRACES = {
    "azure-conv-2023": "azure_conv_2023.csv.gz",
    "azure-code-2023": "azure_code_2023.csv.gz",
}
BUILTIN_TRACES = (*PUBLISHED_TRACES, *AZURE_TRACES)


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


def parse_azure_trace(text: str, name: str) -> Trace:
    """Read an Azure LLM inference trace (``TIMESTAMP,ContextTokens,GeneratedTokens``): arrival times
    in seconds relative to the first request (timestamps at 100 ns resolution), prompt and output
    tokens per request.

    Raises:
        ScenarioError: path ``workload.trace``: a bad header, timestamp or length, timestamps out of
            order, or more than ``MAX_REQUESTS`` rows."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip() for c in rows[0]] != ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]:
        raise ScenarioError("workload.trace", f"{name}: header must be TIMESTAMP,ContextTokens,GeneratedTokens")
    rows = rows[1:]
    if not rows:
        raise ScenarioError("workload.trace", f"{name}: trace is empty")
    if len(rows) > MAX_REQUESTS:
        raise ScenarioError("workload.trace", f"{name}: more than {MAX_REQUESTS} rows")
    try:
        stamps = np.array([r[0] for r in rows], dtype="datetime64[ns]")
        lengths = np.array([[int(r[1]), int(r[2])] for r in rows], dtype=np.int64)
    except (IndexError, ValueError) as exc:
        raise ScenarioError("workload.trace", f"{name}: not TIMESTAMP,ContextTokens,GeneratedTokens rows: "
                                              f"{_short(str(exc))}") from None
    if np.any(lengths < 1) or np.any(lengths > MAX_TOKENS):
        raise ScenarioError("workload.trace", f"{name}: token counts must be in [1, {MAX_TOKENS}]")
    arrival_s = (stamps - stamps[0]).astype(np.int64) * 1e-9
    if np.any(np.diff(arrival_s) < 0):
        raise ScenarioError("workload.trace", f"{name}: timestamps must be non-decreasing")
    span = float(arrival_s[-1])
    return Trace(name=name, arrival_s=arrival_s, prompt_tokens=lengths[:, 0].copy(),
                 output_tokens=lengths[:, 1].copy(), nominal_rate_per_s=len(rows) / span if span > 0 else None)


def trace_window(trace: Trace, offset_requests: int = 0, offset_s: float = 0.0,
                 num_requests: int | None = None) -> tuple[int, int]:
    """Index range ``[start, stop)`` of a trace window: skip the first ``offset_requests`` requests,
    or every request arriving before ``offset_s`` seconds (relative to the trace's first request),
    then take the next ``num_requests`` (all remaining when None).  Callers shift arrival times so
    the window's first request arrives at 0.

    Raises:
        ScenarioError: path ``workload.trace_offset`` (window empty) or ``workload.num_requests``
            (fewer requests in the window than asked for)."""
    n = len(trace.arrival_s)
    start = int(offset_requests)
    if offset_s > 0:
        start = int(np.searchsorted(trace.arrival_s, trace.arrival_s[0] + offset_s, side="left"))
    if start >= n:
        raise ScenarioError("workload.trace_offset", f"trace {_short(trace.name)} holds {n} requests; the offset "
                                                     "leaves none")
    if num_requests is None:
        return start, n
    if start + num_requests > n:
        raise ScenarioError("workload.num_requests", f"trace {_short(trace.name)} holds {n - start} requests after the "
                                                     f"offset, asked for {num_requests}")
    return start, start + int(num_requests)


@lru_cache(maxsize=32)
def load_trace(name: str, base_dir: str | None = None) -> Trace:
    """Load a built-in trace by name (``published-0.1``, ``published-0.5``, ``azure-conv-2023``,
    ``azure-code-2023``; no network), or a CSV trace by path (relative to ``base_dir``).

    Raises:
        ScenarioError: path ``workload.trace``: an unknown name or a malformed file."""
    if name in PUBLISHED_TRACES:
        file, rate = PUBLISHED_TRACES[name]
        text = resources.files("distllm_env").joinpath(f"data/traces/{file}").read_text()
        tr = parse_published_gaps(text, name)
        return Trace(name=name, arrival_s=tr.arrival_s, nominal_rate_per_s=rate)
    if name in AZURE_TRACES:
        data = resources.files("distllm_env").joinpath(f"data/traces/{AZURE_TRACES[name]}").read_bytes()
        return parse_azure_trace(gzip.decompress(data).decode("utf-8"), name)
    p = Path(name)
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    if not p.is_file():
        raise ScenarioError("workload.trace", f"unknown trace {_short(repr(name))}; expected one of {list(BUILTIN_TRACES)} "
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


__all__ = ["AZURE_TRACES", "BUILTIN_TRACES", "PUBLISHED_TRACES", "Trace", "load_trace", "parse_azure_trace",
           "parse_csv_trace", "parse_published_gaps", "trace_window"]

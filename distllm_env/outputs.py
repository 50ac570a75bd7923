"""Writers for the per-request table (docs/contracts.md §6).

CSV ``F.csv``: a plain table that ``csv.DictReader`` and ``pandas.read_csv`` read with their defaults:
one header line (:data:`REQUEST_COLUMNS`), then one row per request; the route as
``s3:0-40|s7:41-69``; NaN (rejected requests) as an empty field.  No comment lines: the metadata
(version, scenario, hash, overrides, seed, policies, delays) and the run's summary go to the JSON
sidecar ``F.csv.json`` (:func:`sidecar_path`): ``{"meta": …, "summary": …, "columns": [...]}``.
JSON ``F.json``: ``{"meta": …, "summary": …, "requests": [...]}`` with the route as a list of
``{server, first_block, last_block}`` (``summary`` only when given).  No wall-clock values: the same
seed gives byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from .errors import ScenarioError
from .simulator import RequestRecord

REQUEST_COLUMNS = ("request_id", "client", "arrival_s", "start_s", "first_token_s", "completion_s", "wait_s",
                   "prompt_tokens", "output_tokens", "hops", "route", "status", "reason", "declared_tokens", "truncated",
                   "reserved_bytes_per_block", "failovers", "recovery_s")


def _num(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def record_row(r: RequestRecord, json_route: bool = False) -> dict[str, Any]:
    route: Any
    if json_route:
        route = r.route.to_json() if r.route is not None else []
    else:
        route = r.route.to_text() if r.route is not None else ""
    return {
        "request_id": r.request_id, "client": r.client, "arrival_s": r.arrival_s, "start_s": r.start_s,
        "first_token_s": r.first_token_s, "completion_s": r.completion_s, "wait_s": r.wait_s,
        "prompt_tokens": r.prompt_tokens, "output_tokens": r.output_tokens, "hops": r.hops, "route": route,
        "status": r.status, "reason": r.reason, "declared_tokens": r.declared_tokens, "truncated": int(r.truncated),
        "reserved_bytes_per_block": r.kv_bytes_per_block,
        "failovers": r.failovers, "recovery_s": r.recovery_s,
    }


#: ``meta["data_attribution"]`` when a built-in Azure trace is used (CC-BY 4.0 asks for attribution;
#: source: distllm_env/data/traces/SOURCE.md and LICENSE, docs/contracts.md §6)
AZURE_TRACE_ATTRIBUTION = ("Azure LLM inference traces 2023, Microsoft Azure (Azure/AzurePublicDataset), CC-BY 4.0; "
                           "Patel et al., \"Splitwise\", ISCA 2024")


def data_attribution(scenario: Any) -> str | None:
    """The attribution a run's data asks for: :data:`AZURE_TRACE_ATTRIBUTION` when the scenario's
    ``workload.trace`` is a built-in Azure trace (``azure-conv-2023``, ``azure-code-2023``), else None."""
    from .traces import AZURE_TRACES

    workload = getattr(scenario, "workload", None)
    return AZURE_TRACE_ATTRIBUTION if getattr(workload, "trace", None) in AZURE_TRACES else None


def add_data_attribution(meta: dict, scenario: Any) -> dict:
    """Add ``data_attribution`` to ``meta`` (in place; returned) when :func:`data_attribution` gives one."""
    note = data_attribution(scenario)
    if note:
        meta["data_attribution"] = note
    return meta


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (AttributeError, ValueError):
            pass
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def check_out_path(path: str | Path, field: str = "--out", sidecar: bool = False, extra: Sequence[str | Path] = ()
                   ) -> None:
    """Refuse, before any work is done, an output path that cannot be written: an existing directory,
    an existing file that is not writable, a parent that is a file, or a directory that cannot be
    created or written (missing parent folders are fine: the writers create them, docs/contracts.md
    §6).  ``sidecar``: also check the CSV sidecar ``PATH.json`` (:func:`sidecar_path`);
    ``extra``: more paths written next to it (e.g. a model's ``PATH.json``).  Raises
    :class:`~distllm_env.errors.ScenarioError` naming ``field`` (exit code 2 in the CLI)."""
    paths = [Path(path)] + ([sidecar_path(path)] if sidecar else []) + [Path(e) for e in extra]
    for p in paths:
        if p.is_dir():
            raise ScenarioError(field, f"{str(p)!r} is an existing directory; expected a file path")
        if p.exists() and not os.access(p, os.W_OK):
            raise ScenarioError(field, f"{str(p)!r} exists and is not writable")
        anc = p.absolute().parent
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if not anc.is_dir():
            raise ScenarioError(field, f"cannot write {str(p)!r}: {str(anc)!r} is not a directory")
        if not os.access(anc, os.W_OK | os.X_OK):
            raise ScenarioError(field, f"cannot write {str(p)!r}: directory {str(anc)!r} is not writable")


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a CSV output: ``F.csv`` → ``F.csv.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def sidecar_json(meta: dict, columns: Sequence[str], **extra: Any) -> str:
    """Text of a CSV's sidecar: ``{"meta": meta, **extra, "columns": columns}`` (NaN/inf as null)."""
    payload = {"meta": meta, **{k: v for k, v in extra.items() if v is not None}, "columns": list(columns)}
    return json.dumps(json_safe(payload), indent=1, sort_keys=False) + "\n"


def write_csv(path: str | Path, text: str, sidecar: str) -> Path:
    """Write a plain CSV table and its sidecar ``F.csv.json`` (:func:`sidecar_path`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    sidecar_path(path).write_text(sidecar)
    return path


def requests_csv(records: Sequence[RequestRecord], meta: dict | None = None) -> str:
    """The per-request table as plain CSV text (header + one row per request).  ``meta`` is accepted
    for compatibility and not written: it belongs in the sidecar (:func:`write_requests`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(REQUEST_COLUMNS)
    for r in records:
        row = record_row(r)
        w.writerow([_num(row[c]) if c.endswith("_s") else row[c] for c in REQUEST_COLUMNS])
    return buf.getvalue()


def requests_json(records: Sequence[RequestRecord], meta: dict, summary: dict | None = None) -> str:
    payload: dict[str, Any] = {"meta": json_safe(meta)}
    if summary is not None:
        payload["summary"] = json_safe(summary)
    payload["requests"] = [json_safe(record_row(r, json_route=True)) for r in records]
    return json.dumps(payload, indent=1, sort_keys=False) + "\n"


def write_requests(path: str | Path, records: Sequence[RequestRecord], meta: dict,
                   summary: dict | None = None) -> Path:
    """Write the per-request table as CSV (plus its sidecar ``F.csv.json``) or JSON, chosen by the file
    extension.  Raises :class:`ValueError` for another extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return write_csv(path, requests_csv(records), sidecar_json(meta, REQUEST_COLUMNS, summary=summary))
    if suffix == ".json":
        text = requests_json(records, meta, summary)
    else:
        raise ValueError(f"--out must end in .csv or .json, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


__all__ = ["AZURE_TRACE_ATTRIBUTION", "REQUEST_COLUMNS", "add_data_attribution", "check_out_path", "data_attribution", "json_safe", "record_row", "requests_csv", "requests_json", "sidecar_json", "sidecar_path",
           "write_csv", "write_requests"]

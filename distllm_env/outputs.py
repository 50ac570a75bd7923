"""Writers for the per-request table (CONTRACTS.md §6).

CSV: ``meta`` as ``# key: <json>`` comment lines, then a header and one row per request; the route
as ``s3:0-40|s7:41-69``; NaN (rejected requests) as an empty field.  JSON: ``{"meta": …,
"requests": [...]}`` with the route as a list of ``{server, first_block, last_block}``.  No
wall-clock values: the same seed gives a byte-identical file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

from .simulator import RequestRecord

REQUEST_COLUMNS = ("request_id", "client", "arrival_s", "start_s", "first_token_s", "completion_s", "wait_s",
                   "prompt_tokens", "output_tokens", "hops", "route", "status", "reason")


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
        "status": r.status, "reason": r.reason,
    }


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


def requests_csv(records: Sequence[RequestRecord], meta: dict) -> str:
    buf = io.StringIO()
    for k, v in meta.items():
        buf.write(f"# {k}: {json.dumps(json_safe(v), sort_keys=True)}\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(REQUEST_COLUMNS)
    for r in records:
        row = record_row(r)
        w.writerow([_num(row[c]) if c.endswith("_s") else row[c] for c in REQUEST_COLUMNS])
    return buf.getvalue()


def requests_json(records: Sequence[RequestRecord], meta: dict) -> str:
    payload = {"meta": json_safe(meta), "requests": [json_safe(record_row(r, json_route=True)) for r in records]}
    return json.dumps(payload, indent=1, sort_keys=False) + "\n"


def write_requests(path: str | Path, records: Sequence[RequestRecord], meta: dict) -> Path:
    """Write the per-request table as CSV or JSON, chosen by the file extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        text = requests_csv(records, meta)
    elif suffix == ".json":
        text = requests_json(records, meta)
    else:
        raise ValueError(f"--out must end in .csv or .json, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


__all__ = ["REQUEST_COLUMNS", "json_safe", "record_row", "requests_csv", "requests_json", "write_requests"]

"""The lean trace detail (``GET /api/v1/traces/{trace_id}?view=lean``): what the trace page draws
first — the trace's summary and scores, and per span only what the tree and timeline show — as one
array per field instead of one object per span.

Why: a 10,000-span trace as nested span objects (``payloads=false``) is ~7.6 MB of JSON and ~0.5 s of
building dicts in Python; the page opens each span's payloads with ``/traces/{id}/spans/{span_id}``
anyway. Here ClickHouse formats the times, the rows come back column-wise, and the arrays are
encoded as they are (retried copies not yet merged away are collapsed as ``get_trace`` does): ~1.3 MB and a few tens of ms for the same trace.
"""

from __future__ import annotations

import math
from typing import Any

from core.span import DUPLICATE_OF
from query_api.filters import Binder
from query_api.timefmt import num
from query_api.traces_sql import (POINT_READ_SETTINGS, SCORE_FIELDS, SUMMARY_COLUMNS, NotFound, _score,
                                  _trace_bounds, latest_versions, summarize)

# Per span, in the answer's ``span_columns`` (the tree's and timeline's fields, the texts the tree's
# search looks in, and the previews: at most PREVIEW_CHARS each).
LEAN_FIELDS = ("span_id", "parent_span_id", "name", "kind", "model", "status", "status_message", "start_time",
               "end_time", "duration_ms", "cost", "total_tokens", "input_preview", "output_preview")
_ISO = "if(toUnixTimestamp64Micro({c}) % 1000000 = 0, formatDateTime({c}, '%Y-%m-%dT%H:%i:%SZ'), " \
       "formatDateTime({c}, '%Y-%m-%dT%H:%i:%S.%fZ'))"  # timefmt.iso_from_micros' text, byte for byte
_READ = tuple(dict.fromkeys(f for f in (*LEAN_FIELDS, *SUMMARY_COLUMNS) if f not in ("start_time", "end_time")))
_NAMES = ("start_us", "end_us", *_READ, "start_time", "end_time", "duplicate_of")  # span_id third: latest_versions


def get_trace_lean(client, project_id: str, trace_id: str) -> dict[str, Any]:
    """The trace's summary (as ``get_trace``), its scores, and ``span_columns``: field -> one value per
    span, spans in start order (then span id), each span once. NotFound if the project has no such trace."""
    bounds = _trace_bounds(client, project_id, [trace_id], POINT_READ_SETTINGS)
    if bounds is None:
        raise NotFound(trace_id)
    b = Binder()
    pid, tid = b.bind(project_id, "String"), b.bind(trace_id, "String")
    lo, hi = b.bind(bounds[0], "Int64"), b.bind(bounds[1], "Int64")
    dup = b.bind(DUPLICATE_OF, "String")
    sql = (f"WITH (SELECT groupArray(({SCORE_FIELDS})) FROM scores FINAL "
           f"WHERE project_id = {pid} AND trace_id = {tid}) AS trace_scores "
           f"SELECT toUnixTimestamp64Micro(start_time), toUnixTimestamp64Micro(end_time), "
           f"{', '.join(_READ)}, {_ISO.format(c='start_time')}, {_ISO.format(c='end_time')}, "
           f"attributes[{dup}] != '', toUnixTimestamp64Milli(ingested_at), trace_scores FROM trace_spans "
           f"WHERE project_id = {pid} AND trace_id = {tid} "
           f"AND start_time >= fromUnixTimestamp64Micro({lo}, 'UTC') AND start_time <= fromUnixTimestamp64Micro({hi}, 'UTC') "
           f"ORDER BY start_time, span_id")
    result = client.query(sql, parameters=b.params, settings=POINT_READ_SETTINGS)
    if not result.row_count:
        raise NotFound(trace_id)
    columns = result.result_columns
    scores = columns[-1][0]
    span_ids = columns[_NAMES.index("span_id")]
    if len(set(span_ids)) < len(span_ids):  # retried copies not merged yet: keep what FINAL would
        rows = latest_versions(list(zip(*columns[:-1])))
        columns = list(zip(*rows)) if rows else []
    cols = dict(zip(_NAMES, columns))
    for field in ("duration_ms", "cost"):  # NaN / inf are not JSON (rare: checked once per column)
        if not all(map(math.isfinite, filter(None, cols[field]))):
            cols[field] = [num(v) for v in cols[field]]
    summary = summarize(trace_id, cols)
    summary["scores"] = sorted((_score(s) for s in scores), key=lambda s: (s["timestamp"], s["score_id"]))
    summary["span_columns"] = {f: cols[f] for f in LEAN_FIELDS}
    return summary

"""One model call recorded twice counts once: mark the extra records of a call in an ingest request.

A call is often recorded by two producers at once: the provider SDK's own OTel span (anthropic's
``com.anthropic.sdk.python`` scope) plus an instrumentor's (OpenInference, OpenLLMetry, our SDK), or
two instrumentors. Both spans are kept and shown; only one of them may count in tokens, cost and
request aggregates. Two model-call spans (kind ``llm``) are the same call when

- they report the same provider response id (``gen_ai.response.id``) and their time ranges overlap
  (OpenLLMetry's Anthropic span and the SDK's are in *different* traces when the app has no parent
  span of its own, so the response id, not the trace, joins them), or
- one is the direct parent of the other in the same trace and their response ids, when both have one,
  agree (OpenInference wraps ``messages.create``; the SDK's span is its child and the OpenInference
  span has no response id).

Which record counts (the rule is deterministic, whatever order the spans arrive in): the one that
reported token usage; among those, the one that also reports a time to first token; then the one that
carries the messages (input / output); then the outer one (an ancestor before its descendant); then the
smaller span id. Every other record of the call gets ``attributes["evalforge.duplicate_of"]`` = the
span id of the counted one, and the ClickHouse column ``spans.counted`` (materialised from that
attribute, migration 0013) is 0 for it: aggregates multiply by ``counted`` (or filter ``counted = 1``).

Scope: the spans of one export request. An OTel ``BatchSpanProcessor`` exports the two spans of one
call together (they end within milliseconds of each other in the same process); a pair split across
two requests is not joined.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from core.span import DUPLICATE_OF

RESPONSE_ID_KEYS = ("gen_ai.response.id",)
_RESPONSE_ID_NEEDLES = tuple(b'"' + key.encode() + b'":"' for key in RESPONSE_ID_KEYS)


def _response_id(rec: dict[str, Any]) -> str:
    attrs = rec.get("attributes") or {}
    for key in RESPONSE_ID_KEYS:
        value = attrs.get(key)
        if value:
            return str(value)
    return ""


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    a0, a1, b0, b1 = _time(a.get("start_time")), _time(a.get("end_time")), _time(b.get("start_time")), \
        _time(b.get("end_time"))
    if None in (a0, a1, b0, b1):
        return False
    return a0 <= b1 and b0 <= a1  # type: ignore[operator]


def _same_call(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a["provider"] and b["provider"] and a["provider"] != b["provider"]:
        return False
    ra, rb = _response_id(a), _response_id(b)
    if ra and rb:
        return ra == rb and _overlap(a, b)
    nested = a["trace_id"] == b["trace_id"] and (a["parent_span_id"] == b["span_id"]
                                                 or b["parent_span_id"] == a["span_id"])
    return nested


def _depth(rec: dict[str, Any], by_id: dict[tuple[str, str], dict[str, Any]]) -> int:
    depth, seen = 0, set()
    parent = rec["parent_span_id"]
    while parent and (rec["trace_id"], parent) in by_id and parent not in seen:
        seen.add(parent)
        depth += 1
        parent = by_id[(rec["trace_id"], parent)]["parent_span_id"]
    return depth


def mark_duplicate_calls(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark, in place, every record of a call but the counted one; returns the records it marked."""
    calls = [r for r in records if r.get("kind") == "llm"]
    if len(calls) < 2:
        return []
    # union-find over the pairs that can be one call: a call and its parent, calls sharing a response id
    group = list(range(len(calls)))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    def join(i: int, j: int) -> None:
        if root(i) != root(j) and _same_call(calls[i], calls[j]):
            group[root(j)] = root(i)

    index = {(r["trace_id"], r["span_id"]): i for i, r in enumerate(calls)}
    by_response: dict[str, list[int]] = {}
    for i, rec in enumerate(calls):
        parent = index.get((rec["trace_id"], rec["parent_span_id"])) if rec["parent_span_id"] else None
        if parent is not None:
            join(parent, i)
        if response_id := _response_id(rec):
            by_response.setdefault(response_id, []).append(i)
    for same in by_response.values():
        for a in range(len(same)):
            for b in range(a + 1, len(same)):
                join(same[a], same[b])
    members: dict[int, list[dict[str, Any]]] = {}
    for i, rec in enumerate(calls):
        members.setdefault(root(i), []).append(rec)
    by_id = {key: calls[i] for key, i in index.items()}  # depth counts model-call ancestors only
    marked = []
    for recs in members.values():
        if len(recs) < 2:
            continue
        winner = min(recs, key=lambda r: (
            not (r.get("input_tokens") or r.get("output_tokens")), r.get("ttft_ms") is None,
            not (r.get("input") or r.get("output") or r.get("input_ref") or r.get("output_ref")),
            _depth(r, by_id), r["span_id"]))
        for rec in recs:
            if rec is not winner:
                rec["attributes"][DUPLICATE_OF] = winner["span_id"]
                marked.append(rec)
    return marked


_TRACE_KEY, _SPAN_KEY, _PARENT_KEY, _NAME_KEY = b'","trace_id":"', b'","span_id":"', b'","parent_span_id":"', \
    b'","name":"'
_KIND_KEY, _KIND_LLM = b'","kind":"', b'","kind":"llm"'


def _response_id_bytes(data: bytes) -> bytes:
    attributes = max(data.rfind(b',"attributes":{'), 0)  # near the end, after the payloads
    for key in _RESPONSE_ID_NEEDLES:
        at = data.find(key, attributes)
        if at >= 0:
            start = at + len(key)
            return data[start:data.find(b'"', start)]
    return b""


def mark_duplicate_messages(messages: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """:func:`mark_duplicate_calls` for bus messages the native path encoded. Only the records that may
    be one call with another (a model call whose parent or child is a model call of its trace, or whose
    response id another one repeats) are decoded: the ids are read off the record's head, so a request
    of independent calls costs a few substring tests per record. The decision over those records is the
    decision over the whole request (every group member, and every model-call ancestor of one, is among
    them)."""
    if len(messages) < 2:
        return messages
    # Records of one request share their project, so the ids sit at the same offsets in every record
    # (core.span.encode's COLUMNS order: project, trace, span, parent, name, kind): read by slicing.
    trace_at = messages[0][1].find(_TRACE_KEY, 0, 300)
    if trace_at < 0:
        return messages
    span_at = trace_at + len(_TRACE_KEY) + 32 + len(_SPAN_KEY)
    parent_at = span_at + 16 + len(_PARENT_KEY)
    heads: dict[int, tuple[bytes, bytes, bytes, bytes]] = {}  # index -> (trace, span, parent, response id)
    for i, (_, data) in enumerate(messages):
        if data[trace_at:trace_at + len(_TRACE_KEY)] != _TRACE_KEY:
            return mark_slowly(messages)  # not the layout above: decode every model call
        parent_end = parent_at if data[parent_at:parent_at + 1] == b'"' else parent_at + 16
        kind = data.find(_KIND_KEY, parent_end + len(_NAME_KEY))  # a name's own quotes are escaped
        if data[kind:kind + len(_KIND_LLM)] == _KIND_LLM:
            start = trace_at + len(_TRACE_KEY)
            heads[i] = (data[start:start + 32], data[span_at:span_at + 16], data[parent_at:parent_end],
                        _response_id_bytes(data))
    if len(heads) < 2:
        return messages
    at = {(t, s): i for i, (t, s, _, _) in heads.items()}
    rid_seen: dict[bytes, int] = {}
    for _, _, _, rid in heads.values():
        if rid:
            rid_seen[rid] = rid_seen.get(rid, 0) + 1
    candidates: set[int] = set()
    for i, (t, _, p, rid) in heads.items():
        j = at.get((t, p)) if p else None
        # a model call directly under a model call may be the same call, unless both report a response
        # id and the ids differ (``_same_call``): an agent's LLM step calling models is not decoded
        if j is not None and (not rid or not heads[j][3] or rid == heads[j][3]):
            candidates.update((i, j))
        if rid and rid_seen[rid] > 1:
            candidates.add(i)
    # the counted record is chosen by, among others, its depth among model calls: decode every
    # model-call ancestor of a candidate too, so the depths are those of the whole request
    for i in list(candidates):
        t, _, p, _ = heads[i]
        walked = {i}  # parent links can loop in a hostile request
        while p and (j := at.get((t, p))) is not None and j not in walked:
            walked.add(j)
            candidates.add(j)
            p = heads[j][2]
    if len(candidates) < 2:
        return messages
    return _mark_decoded(messages, sorted(candidates))


def mark_slowly(messages: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Decode every model-call record and decide over them (the reference for the fast reading)."""
    return _mark_decoded(messages, [i for i, (_, data) in enumerate(messages) if _KIND_LLM in data])


def _mark_decoded(messages: list[tuple[bytes, bytes]], candidates: list[int]) -> list[tuple[bytes, bytes]]:
    if len(candidates) < 2:
        return messages
    records = [orjson.loads(messages[i][1]) for i in candidates]
    marked = {id(r) for r in mark_duplicate_calls(records)}
    if not marked:
        return messages
    out = list(messages)
    for i, rec in zip(candidates, records):
        if id(rec) in marked:
            out[i] = (messages[i][0], orjson.dumps(rec))
    return out

"""Versioned datasets in PostgreSQL: items, splits, JSON Schemas, import / export.

An item row is immutable and belongs to the versions ``[version_from, version_to)``. Every change
(add, delete, import, generate) opens the next version: new rows start there, deleted rows end there.
Reading version ``v`` therefore returns exactly what the dataset held at ``v``, which is what lets an
experiment pin the version it ran on. An item keeps its ``id`` across versions.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable
from typing import Any, Literal

import jsonschema
import orjson
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.storable import check_storable as check_storable_as

Split = Literal["train", "dev", "test"]
FORMATS = ("jsonl", "csv", "parquet")
ITEM_KEYS = ("id", "input", "expected_output", "metadata", "split", "tags", "source_trace_id", "source_span_id")
MAX_ITEMS_PER_REQUEST = 100_000


class DatasetError(ValueError):
    """Bad input; the message starts with the field it is about (for a 400)."""


class NotFound(LookupError):
    pass


class ItemIn(BaseModel):
    """One item as clients send it."""

    model_config = ConfigDict(extra="forbid")

    input: Any = Field(description="JSON: usually an object whose fields prompt templates use as {{input.field}}")
    expected_output: Any = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    split: Split | None = None
    tags: list[str] = Field(default_factory=list, max_length=100)
    source_trace_id: str | None = Field(None, max_length=64)
    source_span_id: str | None = Field(None, max_length=32)
    # Accepted so an export imports back as it is; a new item always gets a new id.
    id: str | None = Field(None, exclude=True)


def check_storable(value: Any, where: str) -> None:
    check_storable_as(value, where, DatasetError)


def check_items(raw: Iterable[Any], input_schema: dict | None = None, expected_schema: dict | None = None,
                prefix: str = "items") -> tuple[list[ItemIn], list[dict[str, Any]]]:
    """Valid items and the rejected ones (``{"index", "error"}``, the error naming the field)."""
    good: list[ItemIn] = []
    rejected: list[dict[str, Any]] = []
    in_validator = jsonschema.Draft202012Validator(input_schema) if input_schema else None
    out_validator = jsonschema.Draft202012Validator(expected_schema) if expected_schema else None
    for i, data in enumerate(raw):
        where = f"{prefix}[{i}]"
        try:
            if not isinstance(data, dict):
                raise DatasetError(f"{where}: must be an object with input, expected_output, metadata")
            try:
                item = ItemIn.model_validate(data)
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in err["loc"])
                raise DatasetError(f"{where}.{loc}: {err['msg']}") from None
            if "input" not in data:
                raise DatasetError(f"{where}.input: required")
            check_storable(data, where)
            for validator, field, value in ((in_validator, "input", item.input),
                                            (out_validator, "expected_output", item.expected_output)):
                if validator is not None:
                    problem = next(iter(validator.iter_errors(value)), None)
                    if problem is not None:
                        path = "".join(f".{p}" for p in problem.path)
                        raise DatasetError(f"{where}.{field}{path}: does not match the dataset's schema: {problem.message}")
            good.append(item)
        except DatasetError as exc:
            rejected.append({"index": i, "error": str(exc)})
    return good, rejected


def check_schema(schema: Any, field: str) -> None:
    if schema is None:
        return
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise DatasetError(f"{field}: not a valid JSON Schema: {exc.message}") from None


def item_out(row: tuple) -> dict[str, Any]:
    return dict(zip(ITEM_KEYS, row))


_ITEM_COLUMNS = "item_id, input, expected_output, metadata, split, tags, source_trace_id, source_span_id"


async def _insert_rows(conn, dataset_id: str, version: int, rows: list[tuple[str, int, ItemIn]]) -> None:
    """Item rows (id, position, content) opening at ``version``."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO dataset_items (dataset_id, item_id, position, input, expected_output, metadata, split, tags, "
            "source_trace_id, source_span_id, version_from) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(dataset_id, item_id, position, Jsonb(i.input), Jsonb(i.expected_output), Jsonb(i.metadata), i.split,
              i.tags, i.source_trace_id, i.source_span_id, version) for item_id, position, i in rows])


async def _insert_items(conn, dataset_id: str, items: list[ItemIn], version: int, first_position: int) -> list[dict]:
    rows = [(uuid.uuid4().hex, first_position + offset, item) for offset, item in enumerate(items)]
    await _insert_rows(conn, dataset_id, version, rows)
    return [{"id": item_id, **item.model_dump()} for item_id, _, item in rows]


async def create_dataset(conn, project_id: str, name: str, items: list[ItemIn], *, description: str = "",
                         input_schema: dict | None = None, expected_output_schema: dict | None = None,
                         source: str = "api", prompt: dict | None = None) -> tuple[str, int, list[dict]]:
    """A new dataset at version 1 holding ``items``: (id, version, created items)."""
    dataset_id = uuid.uuid4().hex
    async with conn.transaction():
        existing = await (await conn.execute("SELECT 1 FROM datasets WHERE project_id = %s AND name = %s",
                                             (project_id, name))).fetchone()
        if existing:
            raise FileExistsError(f"name: a dataset called {name!r} already exists")
        await conn.execute(
            "INSERT INTO datasets (id, project_id, name, source, prompt, description, input_schema, expected_output_schema, version) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 1)",
            (dataset_id, project_id, name, source, Jsonb(prompt or {}), description,
             Jsonb(input_schema) if input_schema is not None else None,
             Jsonb(expected_output_schema) if expected_output_schema is not None else None))
        await conn.execute("INSERT INTO dataset_versions (dataset_id, version, change) VALUES (%s, 1, %s)",
                           (dataset_id, f"created with {len(items)} items"))
        created = await _insert_items(conn, dataset_id, items, 1, 0)
    return dataset_id, 1, created


async def schemas(conn, project_id: str, dataset_id: str) -> tuple[dict | None, dict | None]:
    row = await (await conn.execute("SELECT input_schema, expected_output_schema FROM datasets WHERE id = %s AND project_id = %s",
                                    (dataset_id, project_id))).fetchone()
    if row is None:
        raise NotFound("no such dataset in your project")
    return row[0], row[1]


async def _next_version(conn, project_id: str, dataset_id: str, change: str) -> int:
    """Lock the dataset and open its next version (the caller is inside a transaction)."""
    row = await (await conn.execute("SELECT version FROM datasets WHERE id = %s AND project_id = %s FOR UPDATE",
                                    (dataset_id, project_id))).fetchone()
    if row is None:
        raise NotFound("no such dataset in your project")
    version = row[0] + 1
    await conn.execute("UPDATE datasets SET version = %s, updated_at = now() WHERE id = %s", (version, dataset_id))
    await conn.execute("INSERT INTO dataset_versions (dataset_id, version, change) VALUES (%s, %s, %s)",
                       (dataset_id, version, change))
    return version


async def add_items(conn, project_id: str, dataset_id: str, items: list[ItemIn], change: str = "") -> tuple[int, list[dict]]:
    """Append ``items`` as a new version: (version, created items)."""
    async with conn.transaction():
        version = await _next_version(conn, project_id, dataset_id, change or f"added {len(items)} items")
        last = await (await conn.execute("SELECT coalesce(max(position) + 1, 0) FROM dataset_items WHERE dataset_id = %s",
                                         (dataset_id,))).fetchone()
        created = await _insert_items(conn, dataset_id, items, version, last[0])
    return version, created


async def delete_items(conn, project_id: str, dataset_id: str, item_ids: list[str]) -> int:
    """Remove items from the next version on (earlier versions keep them)."""
    async with conn.transaction():
        version = await _next_version(conn, project_id, dataset_id, f"deleted {len(item_ids)} items")
        cur = await conn.execute("UPDATE dataset_items SET version_to = %s WHERE dataset_id = %s AND item_id = ANY(%s) "
                                 "AND version_to IS NULL", (version, dataset_id, item_ids))
        if cur.rowcount != len(set(item_ids)):
            raise DatasetError("item_ids: some ids are not items of the current version")
    return version


async def update_item(conn, project_id: str, dataset_id: str, item_id: str, item: ItemIn) -> int:
    """Replace an item from the next version on; it keeps its id and position (earlier versions keep
    the old content)."""
    async with conn.transaction():
        version = await _next_version(conn, project_id, dataset_id, f"edited item {item_id}")
        row = await (await conn.execute(
            "UPDATE dataset_items SET version_to = %s WHERE dataset_id = %s AND item_id = %s AND version_to IS NULL "
            "RETURNING position", (version, dataset_id, item_id))).fetchone()
        if row is None:
            raise NotFound("item_id: not an item of the current version")
        await _insert_rows(conn, dataset_id, version, [(item_id, row[0], item)])
    return version


async def get_dataset(conn, project_id: str, dataset_id: str, version: int | None = None,
                      split: str | None = None, with_items: bool = True) -> dict[str, Any]:
    head = await (await conn.execute(
        "SELECT id, name, source, prompt, created_at, description, version, input_schema, expected_output_schema "
        "FROM datasets WHERE id = %s AND project_id = %s", (dataset_id, project_id))).fetchone()
    if head is None:
        raise NotFound("no such dataset in your project")
    latest = head[6]
    version = latest if version is None else version
    if not 1 <= version <= latest:
        raise DatasetError(f"version: dataset has versions 1..{latest}")
    out = {"id": head[0], "name": head[1], "source": head[2], "prompt": head[3], "created_at": head[4].isoformat(),
           "description": head[5], "version": version, "latest_version": latest, "input_schema": head[7],
           "expected_output_schema": head[8]}
    if with_items:
        out["items"] = await read_items(conn, dataset_id, version, split)
    return out


async def read_items(conn, dataset_id: str, version: int, split: str | None = None) -> list[dict[str, Any]]:
    sql = (f"SELECT {_ITEM_COLUMNS} FROM dataset_items WHERE dataset_id = %s AND version_from <= %s "
           "AND (version_to IS NULL OR version_to > %s)")
    params: list[Any] = [dataset_id, version, version]
    if split:
        sql += " AND split = %s"
        params.append(split)
    rows = await (await conn.execute(sql + " ORDER BY position", params)).fetchall()
    return [item_out(r) for r in rows]


async def list_datasets(conn, project_id: str) -> list[dict[str, Any]]:
    rows = await (await conn.execute(
        "SELECT d.id, d.name, d.description, d.source, d.version, d.created_at, d.updated_at, "
        "(SELECT count(*) FROM dataset_items i WHERE i.dataset_id = d.id AND i.version_to IS NULL) "
        "FROM datasets d WHERE d.project_id = %s ORDER BY d.created_at DESC", (project_id,))).fetchall()
    return [{"id": r[0], "name": r[1], "description": r[2], "source": r[3], "version": r[4],
             "created_at": r[5].isoformat(), "updated_at": r[6].isoformat(), "items": r[7]} for r in rows]


# --- import / export -------------------------------------------------------------------------------

def _json_or_text(value: Any) -> Any:
    """A CSV / Parquet cell: JSON when it parses (exports write JSON there), else the text itself."""
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def _row_to_item(row: dict[str, Any], cells_are_json: bool) -> dict[str, Any]:
    """A flat row -> item: known columns by name; without an ``input`` column, the other columns are the input."""
    decode = _json_or_text if cells_are_json else (lambda v: v)
    known = {k: row[k] for k in ("input", "expected_output", "metadata", "split", "tags", "source_trace_id",
                                 "source_span_id") if k in row and row[k] is not None and row[k] != ""}
    item: dict[str, Any] = {}
    if "input" in known:
        item["input"] = decode(known["input"])
    else:
        item["input"] = {k: v for k, v in row.items() if k not in known and k not in ("id", "expected")}
    if "expected_output" in known:
        item["expected_output"] = decode(known["expected_output"])
    elif row.get("expected") not in (None, ""):
        item["expected_output"] = decode(row["expected"])
    for key in ("metadata", "tags"):
        if key in known:
            item[key] = decode(known[key])
    for key in ("split", "source_trace_id", "source_span_id"):
        if key in known:
            item[key] = known[key]
    return item


def parse_import(data: bytes, fmt: str) -> list[Any]:
    """Rows of an uploaded file as item dicts (validated later, row by row)."""
    import polars as pl

    if fmt == "jsonl":
        rows = []
        for n, line in enumerate(data.splitlines(), 1):
            if line.strip():
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise DatasetError(f"file: line {n} is not JSON ({exc})") from None
                rows.append(row if not isinstance(row, dict) or "input" in row else _row_to_item(row, False))
        return rows
    try:
        if fmt == "csv":
            frame = pl.read_csv(io.BytesIO(data), infer_schema=False)  # every cell as text; JSON decoded below
        elif fmt == "parquet":
            frame = pl.read_parquet(io.BytesIO(data))
        else:
            raise DatasetError(f"format: one of {', '.join(FORMATS)}")
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - polars raises several error types for malformed files
        raise DatasetError(f"file: cannot read as {fmt}: {str(exc).splitlines()[0][:200]}") from None
    return [_row_to_item(row, True) for row in frame.to_dicts()]


def export_items(items: list[dict[str, Any]], fmt: str) -> tuple[bytes, str]:
    """(body, media type). CSV and Parquet cells of input / expected_output / metadata / tags are JSON text,
    so an export imports back to the same items."""
    if fmt == "jsonl":
        return b"".join(orjson.dumps(i) + b"\n" for i in items), "application/x-ndjson"
    import polars as pl

    columns = {key: [i[key] for i in items] for key in ITEM_KEYS}
    for key in ("input", "expected_output", "metadata", "tags"):
        columns[key] = [orjson.dumps(v).decode() for v in columns[key]]
    frame = pl.DataFrame(columns, schema={k: pl.String for k in ITEM_KEYS})
    buf = io.BytesIO()
    if fmt == "csv":
        frame.write_csv(buf)
        return buf.getvalue(), "text/csv"
    if fmt == "parquet":
        frame.write_parquet(buf)
        return buf.getvalue(), "application/vnd.apache.parquet"
    raise DatasetError(f"format: one of {', '.join(FORMATS)}")

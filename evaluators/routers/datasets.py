"""``/api/v1/datasets``: versioned test sets (create, list, read a version, add / delete items, import,
export, add from a trace, synthetic generation). Logic lives in ``evaluators.datasets``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from core.deps import ProjectDep, ServicesDep
from evaluators import datasets as store
from evaluators.llm import LLMSettings
from evaluators.routers.assist import assistant, record_calls
from evaluators.synthetic import generate_tests

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])

MAX_UPLOAD_BYTES = 64 * 1024 * 1024


class GenerateIn(BaseModel):
    """Synthetic items for a prompt template (edge cases included); ``llm`` to have a model write them."""

    system_prompt: str = Field("", max_length=100_000)
    user_template: str = Field("", max_length=100_000)
    n: int = Field(5, ge=1, le=100)
    include_edge_cases: bool = True
    llm: LLMSettings | None = None


class DatasetIn(GenerateIn):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=10_000)
    items: list[Any] = Field(default_factory=list, max_length=store.MAX_ITEMS_PER_REQUEST)
    input_schema: dict[str, Any] | None = None
    expected_output_schema: dict[str, Any] | None = None


class ItemsIn(BaseModel):
    items: list[Any] = Field(min_length=1, max_length=store.MAX_ITEMS_PER_REQUEST)


class DeleteIn(BaseModel):
    item_ids: list[str] = Field(min_length=1, max_length=10_000)


class FromTraceIn(BaseModel):
    trace_id: str = Field(min_length=1, max_length=64)
    span_id: str | None = Field(None, max_length=32, description="default: the trace's root span")
    expected_output: Any = Field(None, description="default: the span's output")
    metadata: dict[str, Any] = Field(default_factory=dict)
    split: store.Split | None = None


def _bad(exc: Exception) -> HTTPException:
    if isinstance(exc, store.NotFound):
        return HTTPException(404, str(exc))
    if isinstance(exc, FileExistsError):
        return HTTPException(409, str(exc))
    return HTTPException(400, str(exc))


async def _generated(body: GenerateIn, project, services) -> list[dict[str, Any]]:
    """Synthetic rows as items (tags kept; an expected answer when the model gave one)."""
    rows, calls = await asyncio.to_thread(generate_tests, body.user_template, body.system_prompt, n=body.n,
                                          project_id=project.id, include_edge_cases=body.include_edge_cases,
                                          **await asyncio.to_thread(assistant, body.llm, services))
    await record_calls(services.require_bus(), calls, project.id)
    return [{"input": r.input, "expected_output": r.expected, "tags": r.tags, "metadata": {"source": "synthetic"}}
            for r in rows]


@router.post("", status_code=201)
async def create_dataset(body: DatasetIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Create a dataset from ``items`` (version 1), or generate them from ``user_template``.
    Items that fail validation are left out and listed in ``rejected`` with the field at fault."""
    try:
        for field in ("name", "description", "input_schema", "expected_output_schema"):
            store.check_storable(getattr(body, field), field)
        store.check_schema(body.input_schema, "input_schema")
        store.check_schema(body.expected_output_schema, "expected_output_schema")
    except store.DatasetError as exc:
        raise _bad(exc) from None
    raw, source, prompt = body.items, "api", None
    if not raw and body.user_template:
        raw, source = await _generated(body, project, services), "synthetic"
        prompt = {"system_prompt": body.system_prompt, "user_template": body.user_template}
    items, rejected = store.check_items(raw, body.input_schema, body.expected_output_schema)
    if raw and not items:
        raise HTTPException(400, rejected[0]["error"])
    async with services.require_pg().connection() as conn:
        try:
            dataset_id, version, created = await store.create_dataset(
                conn, project.id, body.name, items, description=body.description, input_schema=body.input_schema,
                expected_output_schema=body.expected_output_schema, source=source, prompt=prompt)
        except (store.DatasetError, FileExistsError) as exc:
            raise _bad(exc) from None
    return {"id": dataset_id, "name": body.name, "version": version, "items": created, "rejected": rejected}


@router.get("")
async def list_datasets(project: ProjectDep, services: ServicesDep) -> dict:
    async with services.require_pg().connection() as conn:
        return {"datasets": await store.list_datasets(conn, project.id)}


@router.get("/{dataset_id}")
async def get_dataset(dataset_id: str, project: ProjectDep, services: ServicesDep,
                      version: int | None = Query(None, ge=1, description="default: the latest"),
                      split: store.Split | None = None) -> dict:
    async with services.require_pg().connection() as conn:
        try:
            return await store.get_dataset(conn, project.id, dataset_id, version, split)
        except (store.DatasetError, store.NotFound) as exc:
            raise _bad(exc) from None


async def _append(project, services, dataset_id: str, raw: list[Any], change: str, prefix: str = "items") -> dict:
    async with services.require_pg().connection() as conn:
        try:
            input_schema, expected_schema = await store.schemas(conn, project.id, dataset_id)
            items, rejected = store.check_items(raw, input_schema, expected_schema, prefix)
            if not items:
                raise store.DatasetError(rejected[0]["error"] if rejected else f"{prefix}: no items")
            version, created = await store.add_items(conn, project.id, dataset_id, items, change)
        except (store.DatasetError, store.NotFound) as exc:
            raise _bad(exc) from None
    return {"id": dataset_id, "version": version, "added": len(created), "items": created, "rejected": rejected}


@router.post("/{dataset_id}/items", status_code=201)
async def add_items(dataset_id: str, body: ItemsIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Add items as a new version; invalid ones are listed in ``rejected``."""
    return await _append(project, services, dataset_id, body.items, "")


@router.put("/{dataset_id}/items/{item_id}")
async def update_item(dataset_id: str, item_id: str, body: dict[str, Any], project: ProjectDep,
                      services: ServicesDep) -> dict:
    """Replace one item's content as a new version (same id and position; earlier versions unchanged)."""
    async with services.require_pg().connection() as conn:
        try:
            input_schema, expected_schema = await store.schemas(conn, project.id, dataset_id)
            items, rejected = store.check_items([body], input_schema, expected_schema, "item")
            if rejected:
                raise store.DatasetError(rejected[0]["error"].replace("item[0]", "item", 1))
            version = await store.update_item(conn, project.id, dataset_id, item_id, items[0])
        except (store.DatasetError, store.NotFound) as exc:
            raise _bad(exc) from None
    return {"id": dataset_id, "item_id": item_id, "version": version}


@router.post("/{dataset_id}/items/delete")
async def delete_items(dataset_id: str, body: DeleteIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Remove items from a new version on (earlier versions keep them)."""
    async with services.require_pg().connection() as conn:
        try:
            version = await store.delete_items(conn, project.id, dataset_id, body.item_ids)
        except (store.DatasetError, store.NotFound) as exc:
            raise _bad(exc) from None
    return {"id": dataset_id, "version": version}


@router.post("/{dataset_id}/import", status_code=201)
async def import_items(dataset_id: str, project: ProjectDep, services: ServicesDep,
                       file: Annotated[UploadFile, File()], format: Annotated[str | None, Form()] = None) -> dict:
    """Upload a JSONL, CSV or Parquet file of items (format from ``format`` or the file name)."""
    fmt = (format or (file.filename or "").rsplit(".", 1)[-1]).lower()
    if fmt not in store.FORMATS:
        raise HTTPException(400, f"format: one of {', '.join(store.FORMATS)} (or a file name ending so)")
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"file: larger than {MAX_UPLOAD_BYTES} bytes")
    try:
        raw = await asyncio.to_thread(store.parse_import, data, fmt)
    except store.DatasetError as exc:
        raise _bad(exc) from None
    return await _append(project, services, dataset_id, raw, f"imported {file.filename or fmt}", "rows")


@router.get("/{dataset_id}/export")
async def export_items(dataset_id: str, project: ProjectDep, services: ServicesDep,
                       format: str = Query("jsonl", pattern="^(jsonl|csv|parquet)$"),
                       version: int | None = Query(None, ge=1), split: store.Split | None = None) -> Response:
    async with services.require_pg().connection() as conn:
        try:
            ds = await store.get_dataset(conn, project.id, dataset_id, version, split)
        except (store.DatasetError, store.NotFound) as exc:
            raise _bad(exc) from None
    body, media = await asyncio.to_thread(store.export_items, ds["items"], format)
    name = f"{ds['name']}-v{ds['version']}.{format}".replace('"', "")
    return Response(body, media_type=media, headers={"content-disposition": f'attachment; filename="{name}"'})


@router.post("/{dataset_id}/items/from-trace", status_code=201)
async def add_from_trace(dataset_id: str, body: FromTraceIn, project: ProjectDep, services: ServicesDep) -> dict:
    """A span (default: the trace's root) becomes an item: its input, and its output as expected output."""
    span = await asyncio.to_thread(_read_span, services, project.id, body.trace_id, body.span_id)
    if span is None:
        raise HTTPException(404, "trace_id: no such trace / span in your project")
    item = {"input": span["input"], "expected_output": span["output"] if body.expected_output is None else body.expected_output,
            "metadata": {**body.metadata, "span_name": span["name"], "model": span["model"]},
            "split": body.split, "source_trace_id": body.trace_id, "source_span_id": span["span_id"]}
    return await _append(project, services, dataset_id, [item], f"added from trace {body.trace_id}")


@router.post("/{dataset_id}/generate", status_code=201)
async def generate(dataset_id: str, body: GenerateIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Synthetic items for a prompt template, written into this dataset as a new version."""
    if not body.user_template:
        raise HTTPException(400, "user_template: required to generate test inputs")
    return await _append(project, services, dataset_id, await _generated(body, project, services), "generated")


def _read_span(services, project_id: str, trace_id: str, span_id: str | None) -> dict[str, Any] | None:
    where = "span_id = {s:String}" if span_id else "parent_span_id = ''"
    rows = services.clickhouse.query(
        "SELECT span_id, name, model, input, input_ref, output, output_ref FROM spans FINAL "
        f"WHERE project_id = {{p:String}} AND trace_id = {{t:String}} AND {where} ORDER BY start_time LIMIT 1",
        parameters={"p": project_id, "t": trace_id, "s": span_id or ""}).result_rows
    if not rows:
        return None
    sid, name, model, input_text, input_ref, output_text, output_ref = rows[0]
    if input_ref and services.blobs is not None:
        input_text = services.blobs.get(input_ref).decode()
    if output_ref and services.blobs is not None:
        output_text = services.blobs.get(output_ref).decode()
    return {"span_id": sid, "name": name, "model": model, "input": _decoded(input_text), "output": output_text}


def _decoded(text: str) -> Any:
    """A span's input as the item's input: its JSON (chat messages) when it is JSON, else ``{"input": text}``."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"input": text}
    return value if isinstance(value, (dict, list)) else {"input": text}

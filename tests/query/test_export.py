"""GET /api/v1/export: Parquet, CSV and JSONL carry exactly the filtered spans; payloads optional."""

from __future__ import annotations

import io

import orjson
import polars as pl
import pytest

from tests.query.conftest import BASE


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export_formats(api, project_a, fmt):
    resp = api(project_a.key).get("/export", params={"format": fmt, "user_id": "user_7", "from": BASE.isoformat()})
    assert resp.status_code == 200, resp.text
    expected = sorted(s["span_id"] for s in project_a.spans if s["user_id"] == "user_7")
    if fmt == "parquet":
        df = pl.read_parquet(io.BytesIO(resp.content))
    elif fmt == "csv":
        df = pl.read_csv(io.BytesIO(resp.content), infer_schema_length=0)
    else:
        df = pl.DataFrame([orjson.loads(line) for line in resp.content.splitlines()])
    assert sorted(df["span_id"].to_list()) == expected
    assert set(df["project_id"].to_list()) == {project_a.project_id}
    assert "input" not in df.columns  # payloads are opt-in


def test_export_large_and_payloads(api, project_a, monkeypatch):
    import query_api.export as export

    monkeypatch.setattr(export, "CHUNK_ROWS", 1000)  # several chunks: keyset pagination must not skip or repeat
    resp = api(project_a.key).get("/export", params={"format": "parquet", "model": "gpt-4o", "payloads": "true"})
    assert resp.status_code == 200
    df = pl.read_parquet(io.BytesIO(resp.content))
    rows = [s for s in project_a.spans if s["model"] == "gpt-4o"]
    assert df.height == len(rows) and df["span_id"].n_unique() == len(rows)
    assert dict(zip(df["span_id"], df["input"])) == {s["span_id"]: s["input"] for s in rows}


def test_export_limit_and_bad_format(api, project_a):
    resp = api(project_a.key).get("/export", params={"format": "jsonl", "limit": 10})
    assert len(resp.content.splitlines()) == 10
    bad = api(project_a.key).get("/export", params={"format": "xlsx"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("format:")

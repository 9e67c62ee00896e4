"""Datasets through the real app: versions, splits, schemas, import / export round trips, items from
traces, synthetic generation into a dataset, bad input."""

from __future__ import annotations

import io

import orjson
import polars as pl

from tests.processors.conftest import make_span

ITEMS = [
    {"input": {"question": "2+2"}, "expected_output": "4", "metadata": {"topic": "math"}, "split": "test"},
    {"input": {"question": "capital of France"}, "expected_output": {"answer": "Paris"}, "split": "dev"},
    {"input": "plain text input", "expected_output": 7, "metadata": {"nested": {"a": [1, 2]}}, "tags": ["x"]},
]


def _strip(items):
    keys = ("input", "expected_output", "metadata", "split", "tags")
    return [{k: i.get(k) for k in keys} for i in items]


def _norm(items):
    return [{"input": i["input"], "expected_output": i.get("expected_output"), "metadata": i.get("metadata", {}),
             "split": i.get("split"), "tags": i.get("tags", [])} for i in items]


def test_create_add_delete_make_versions_and_old_versions_read_back(stack):
    _, key = stack.create_key()
    h = stack.headers(key)
    r = stack.client.post("/api/v1/datasets", headers=h, json={"name": "qa", "items": ITEMS})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["version"] == 1 and ds["rejected"] == []
    added = stack.client.post(f"/api/v1/datasets/{ds['id']}/items", headers=h,
                              json={"items": [{"input": {"question": "3+3"}, "expected_output": "6"}]}).json()
    assert added["version"] == 2
    v1 = stack.client.get(f"/api/v1/datasets/{ds['id']}", headers=h, params={"version": 1}).json()
    first_id = v1["items"][0]["id"]
    deleted = stack.client.post(f"/api/v1/datasets/{ds['id']}/items/delete", headers=h, json={"item_ids": [first_id]}).json()
    assert deleted["version"] == 3
    second_id = v1["items"][1]["id"]
    edited = stack.client.put(f"/api/v1/datasets/{ds['id']}/items/{second_id}", headers=h,
                              json={"input": {"question": "capital of Italy"}, "expected_output": "Rome"})
    assert edited.status_code == 200 and edited.json()["version"] == 4, edited.text
    assert stack.client.put(f"/api/v1/datasets/{ds['id']}/items/{first_id}", headers=h,
                            json={"input": {}}).status_code == 404  # deleted at version 3
    assert stack.client.put(f"/api/v1/datasets/{ds['id']}/items/{second_id}", headers=h,
                            json={"expected_output": 1}).json()["error"].startswith("item.input:")

    def at(version):
        return stack.client.get(f"/api/v1/datasets/{ds['id']}", headers=h, params={"version": version}).json()

    assert _strip(at(1)["items"]) == _norm(ITEMS)
    assert at(3)["items"][0]["input"] == {"question": "capital of France"}
    now = at(4)["items"]
    assert (now[0]["id"], now[0]["input"], now[0]["expected_output"]) == (second_id, {"question": "capital of Italy"}, "Rome")
    assert [i["input"] for i in at(2)["items"]] == [i["input"] for i in ITEMS] + [{"question": "3+3"}]
    latest = stack.client.get(f"/api/v1/datasets/{ds['id']}", headers=h).json()
    assert latest["version"] == 4 and [i["input"] for i in latest["items"]] == [
        {"question": "capital of Italy"}, ITEMS[2]["input"], {"question": "3+3"}]
    assert [i["id"] for i in at(2)["items"]][1:3] == [i["id"] for i in latest["items"]][:2]  # ids survive versions
    dev = stack.client.get(f"/api/v1/datasets/{ds['id']}", headers=h, params={"split": "dev", "version": 3}).json()
    assert [i["input"] for i in dev["items"]] == [{"question": "capital of France"}]
    listed = stack.client.get("/api/v1/datasets", headers=h).json()["datasets"]
    assert [(d["name"], d["version"], d["items"]) for d in listed] == [("qa", 4, 3)]
    assert stack.client.get(f"/api/v1/datasets/{ds['id']}", headers=h, params={"version": 5}).status_code == 400
    _, other = stack.create_key()
    assert stack.client.get(f"/api/v1/datasets/{ds['id']}", headers=stack.headers(other)).status_code == 404
    assert stack.client.post(f"/api/v1/datasets/{ds['id']}/items", headers=stack.headers(other),
                             json={"items": ITEMS}).status_code == 404


def test_export_then_import_round_trips_in_every_format(stack):
    _, key = stack.create_key()
    h = stack.headers(key)
    src = stack.client.post("/api/v1/datasets", headers=h, json={"name": "src", "items": ITEMS}).json()
    for fmt in ("jsonl", "csv", "parquet"):
        exported = stack.client.get(f"/api/v1/datasets/{src['id']}/export", headers=h, params={"format": fmt})
        assert exported.status_code == 200, exported.text
        dst = stack.client.post("/api/v1/datasets", headers=h, json={"name": f"dst-{fmt}"}).json()
        r = stack.client.post(f"/api/v1/datasets/{dst['id']}/import", headers=h,
                              files={"file": (f"items.{fmt}", exported.content)})
        assert r.status_code == 201, (fmt, r.text)
        back = stack.client.get(f"/api/v1/datasets/{dst['id']}", headers=h).json()
        assert _strip(back["items"]) == _norm(ITEMS), fmt
        assert back["version"] == 2


def test_import_of_a_plain_csv_and_parquet_uses_columns_as_input(stack):
    _, key = stack.create_key()
    h = stack.headers(key)
    ds = stack.client.post("/api/v1/datasets", headers=h, json={"name": "plain"}).json()
    csv = b"question,context,expected_output,split\nWho?,Bob wrote it,Bob,train\nWhen?,In 1999,1999,test\n"
    r = stack.client.post(f"/api/v1/datasets/{ds['id']}/import", headers=h, files={"file": ("x.csv", csv)})
    assert r.status_code == 201, r.text
    frame = pl.DataFrame({"question": ["Why?"], "expected_output": ["because"]})
    buf = io.BytesIO()
    frame.write_parquet(buf)
    r = stack.client.post(f"/api/v1/datasets/{ds['id']}/import", headers=h,
                          files={"file": ("upload.bin", buf.getvalue())}, data={"format": "parquet"})
    assert r.status_code == 201, r.text
    items = stack.client.get(f"/api/v1/datasets/{ds['id']}", headers=h).json()["items"]
    assert [(i["input"], i["expected_output"], i["split"]) for i in items] == [
        ({"question": "Who?", "context": "Bob wrote it"}, "Bob", "train"),
        ({"question": "When?", "context": "In 1999"}, 1999, "test"),  # cells are JSON when they parse
        ({"question": "Why?"}, "because", None)]


def test_schemas_reject_bad_items_and_keep_the_good_ones(stack):
    _, key = stack.create_key()
    h = stack.headers(key)
    schema = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}
    r = stack.client.post("/api/v1/datasets", headers=h, json={
        "name": "typed", "input_schema": schema, "expected_output_schema": {"type": "string"},
        "items": [{"input": {"question": "ok"}, "expected_output": "yes"},
                  {"input": {"question": 5}, "expected_output": "no"},
                  {"input": {"question": "fine"}, "expected_output": 3},
                  {"input": {"question": "bad split"}, "split": "validation"},
                  {"expected_output": "no input"}]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert [i["input"] for i in body["items"]] == [{"question": "ok"}]
    errors = {e["index"]: e["error"] for e in body["rejected"]}
    assert errors[1].startswith("items[1].input.question: does not match")
    assert errors[2].startswith("items[2].expected_output: does not match")
    assert errors[3].startswith("items[3].split")
    assert errors[4].startswith("items[4].input")
    bad = stack.client.post(f"/api/v1/datasets/{body['id']}/items", headers=h, json={"items": [{"input": {"q": 1}}]})
    assert bad.status_code == 400 and bad.json()["error"].startswith("items[0].input: does not match")
    assert stack.client.post("/api/v1/datasets", headers=h, json={
        "name": "badschema", "input_schema": {"type": "nope"}}).json()["error"].startswith("input_schema:")
    assert stack.client.post("/api/v1/datasets", headers=h, json={"name": "nul", "items": [
        {"input": {"q": "a\x00b"}}]}).json()["error"].startswith("items[0]: contains a NUL")
    nan = stack.client.post("/api/v1/datasets", headers={**h, "content-type": "application/json"},
                            content=b'{"name": "nan", "items": [{"input": {"q": NaN}}]}')
    assert nan.json()["error"].startswith("items[0]: contains a non-finite number")
    assert stack.client.post("/api/v1/datasets", headers=h, json={"items": []}).json()["error"].startswith("name")
    assert stack.client.post("/api/v1/datasets", headers=h, json={"name": "a\x00"}).json()["error"].startswith("name: contains a NUL")
    assert stack.client.post("/api/v1/datasets", headers=h, json={"name": "typed"}).status_code == 409
    r = stack.client.post(f"/api/v1/datasets/{body['id']}/import", headers=h, files={"file": ("x.jsonl", b"{not json\n")})
    assert r.status_code == 400 and r.json()["error"].startswith("file: line 1")
    r = stack.client.post(f"/api/v1/datasets/{body['id']}/import", headers=h, files={"file": ("x.xlsx", b"abc")})
    assert r.status_code == 400 and r.json()["error"].startswith("format:")
    r = stack.client.post(f"/api/v1/datasets/{body['id']}/import", headers=h, files={"file": ("x.parquet", b"abc")})
    assert r.status_code == 400 and r.json()["error"].startswith("file: cannot read as parquet")


def test_item_from_a_trace_span_and_synthetic_generation_into_a_dataset(stack):
    project_id, key = stack.create_key()
    h = stack.headers(key)
    span = make_span(project_id, 1)
    span.update(input=orjson.dumps([{"role": "user", "content": "Where is my order?"}]).decode(),
                output="It ships tomorrow.")
    stack.insert_spans([span])
    ds = stack.client.post("/api/v1/datasets", headers=h, json={"name": "from-prod"}).json()
    r = stack.client.post(f"/api/v1/datasets/{ds['id']}/items/from-trace", headers=h,
                          json={"trace_id": span["trace_id"], "span_id": span["span_id"], "split": "test"})
    assert r.status_code == 201, r.text
    item = stack.client.get(f"/api/v1/datasets/{ds['id']}", headers=h).json()["items"][0]
    assert item["input"] == [{"role": "user", "content": "Where is my order?"}]
    assert item["expected_output"] == "It ships tomorrow."
    assert (item["source_trace_id"], item["source_span_id"], item["split"]) == (span["trace_id"], span["span_id"], "test")
    _, other = stack.create_key()
    assert stack.client.post(f"/api/v1/datasets/{ds['id']}/items/from-trace", headers=stack.headers(other),
                             json={"trace_id": span["trace_id"]}).status_code == 404
    gen = stack.client.post(f"/api/v1/datasets/{ds['id']}/generate", headers=h,
                            json={"user_template": "Answer: {{question}}", "n": 2, "include_edge_cases": False})
    assert gen.status_code == 201, gen.text
    assert gen.json()["version"] == 3 and gen.json()["added"] == 2
    items = stack.client.get(f"/api/v1/datasets/{ds['id']}", headers=h).json()["items"]
    assert [set(i["input"]) for i in items[1:]] == [{"question"}, {"question"}]

"""An owner deletes a project: configuration, keys and memberships at once; spans, scores and
offloaded payloads from ClickHouse and the blob store (real chDB, PostgreSQL, Redis, S3 endpoint)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from botocore.exceptions import ClientError

from tests.query.conftest import insert_scores

from .conftest import login, make_user


def _rows(stack, project_id: str) -> dict[str, int]:
    return {table: stack.clickhouse.query(f"SELECT count() FROM {table} WHERE project_id = {{p:String}}",
                                          parameters={"p": project_id}).result_rows[0][0]
            for table in ("spans", "trace_spans", "scores")}


def test_owner_deletes_a_project_and_its_data(client, stack):
    owner, password = make_user(stack)
    login(client, owner, password)
    csrf = client.cookies["ef_csrf"]
    name = f"doomed-{uuid.uuid4().hex[:8]}"
    project_id = client.post("/api/v1/projects", headers={"X-CSRF-Token": csrf}, json={"name": name}).json()["id"]
    headers = {"X-EvalForge-Project": project_id, "X-CSRF-Token": csrf}
    key = client.post("/api/v1/api-keys", headers=headers, json={}).json()["key"]
    admin, admin_password = make_user(stack, "admin", project_id)
    kept_id, kept_key = stack.create_key()  # another project, untouched

    now = datetime.now(timezone.utc)
    spans = [{"project_id": pid, "trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "name": "big",
              "start_time": now - timedelta(seconds=1), "end_time": now, "ingested_at": now, "status": "ok",
              "input": "x" * 10_000} for pid in (project_id, kept_id)]
    stack.insert_spans([dict(s) for s in spans])
    insert_scores(stack.clickhouse, [{
        "project_id": project_id, "score_id": uuid.uuid4().hex, "trace_id": spans[0]["trace_id"], "span_id": "",
        "name": "q", "data_type": "numeric", "value": 1.0, "string_value": "", "comment": "", "source": "api",
        "evaluator": "", "evaluator_version": "", "timestamp": now}])
    blob_ref = stack.clickhouse.query("SELECT input_ref FROM spans WHERE project_id = {p:String}",
                                      parameters={"p": project_id}).result_rows[0][0]
    assert stack.services.blobs.get(blob_ref) == b"x" * 10_000  # offloaded to the S3 endpoint
    assert _rows(stack, project_id) == {"spans": 1, "trace_spans": 1, "scores": 1}

    url = f"/api/v1/projects/current?confirm={name}"
    assert client.delete("/api/v1/projects/current?confirm=wrong", headers=headers).json()["error"].startswith("confirm")
    assert client.delete(url, headers=stack.headers(key)).status_code == 403  # a full key acts as an admin
    client.cookies.clear()
    login(client, admin, admin_password)
    admin_headers = {"X-EvalForge-Project": project_id, "X-CSRF-Token": client.cookies["ef_csrf"]}
    refused = client.delete(url, headers=admin_headers)
    assert refused.status_code == 403 and "owner" in refused.json()["error"]

    client.cookies.clear()
    login(client, owner, password)
    done = client.delete(url, headers={**headers, "X-CSRF-Token": client.cookies["ef_csrf"]})
    assert done.status_code == 200, done.text
    assert {"spans", "trace_spans", "scores"} <= set(done.json()["clickhouse_tables"])
    assert done.json()["payloads"] >= 1

    # access ends at once: the key, the owner's and the admin's membership
    assert client.get("/api/v1/projects/current", headers=stack.headers(key)).status_code == 401
    assert client.get("/api/v1/traces", headers={"X-EvalForge-Project": project_id}).status_code == 404
    assert project_id not in [p["id"] for p in client.get("/api/v1/projects").json()]
    with psycopg.connect(stack.postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM memberships WHERE project_id = %s", (project_id,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM api_keys WHERE project_id = %s", (project_id,)).fetchone()[0] == 0
    # the data goes with the mutations; the other project keeps its own
    deadline = time.monotonic() + 60
    while _rows(stack, project_id) != {"spans": 0, "trace_spans": 0, "scores": 0}:
        assert time.monotonic() < deadline, _rows(stack, project_id)
        time.sleep(0.5)
    assert _rows(stack, kept_id)["spans"] == 1
    assert client.get(f"/api/v1/traces/{spans[1]['trace_id']}", headers=stack.headers(kept_key)).status_code == 200
    with pytest.raises(ClientError):
        stack.services.blobs.get(blob_ref)

"""/api/v1/prompts through the real app: versions, labels, diff, bad input, roles, project scoping, and
the playground's model call recorded as a trace carrying the prompt's name and version."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.accounts.conftest import login, make_user
from tests.evaluators.fake_llm import FakeLLMServer, Reply

CHAT = [{"role": "system", "content": "You answer in {{language}}."}, {"role": "user", "content": "{{question}}"}]


@pytest.fixture
def fake_llm():
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def project(stack):
    project_id, key = stack.create_key()
    return project_id, stack.headers(key), key


def _create(stack, headers, **body):
    r = stack.client.post("/api/v1/prompts", headers=headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_versions_labels_and_diff(stack, project):
    _, h, key = project
    v1 = _create(stack, h, name="support", prompt="Answer: {{question}}", config={"model": "gpt-4o-mini"},
                 message="first", labels=["production"], tags=["faq"])
    assert (v1["version"], v1["type"], v1["labels"]) == (1, "text", ["latest", "production"])
    assert v1["author"] == f"api key {key[:10]}…" and key not in str(v1)
    v2 = _create(stack, h, name="support", prompt=CHAT, config={"model": "gpt-4o", "temperature": 0.2})
    assert (v2["version"], v2["type"], v2["labels"]) == (2, "chat", ["latest"])

    get = stack.client.get
    assert get("/api/v1/prompts/support", headers=h).json()["version"] == 1  # production by default
    assert get("/api/v1/prompts/support", headers=h, params={"label": "latest"}).json()["prompt"] == CHAT
    assert get("/api/v1/prompts/support", headers=h, params={"version": 1}).json()["prompt"] == "Answer: {{question}}"
    assert get("/api/v1/prompts/support", headers=h, params={"label": "staging"}).status_code == 404
    listed = get("/api/v1/prompts", headers=h).json()["prompts"]
    assert [(p["name"], p["latest_version"], p["labels"]) for p in listed] == [
        ("support", 2, {"production": 1, "latest": 2})]

    moved = stack.client.post("/api/v1/prompts/support/labels", headers=h, json={"label": "production", "version": 2})
    assert moved.status_code == 200 and moved.json()["labels"] == ["latest", "production"]
    versions = get("/api/v1/prompts/support/versions", headers=h).json()["versions"]
    assert [(v["version"], v["labels"]) for v in versions] == [(2, ["latest", "production"]), (1, [])]
    r = stack.client.post("/api/v1/prompts/support/labels", headers=h, json={"label": "latest", "version": 1})
    assert r.status_code == 400 and r.json()["error"].startswith("label:")
    assert stack.client.delete("/api/v1/prompts/support/labels/production", headers=h).status_code == 200
    assert get("/api/v1/prompts/support", headers=h).status_code == 404
    history = get("/api/v1/prompts/support/labels/history", headers=h).json()["events"]
    assert [(e["label"], e["from_version"], e["to_version"]) for e in history] == [
        ("production", 2, None), ("production", 1, 2), ("production", None, 1)]
    assert {e["moved_by"] for e in history} == {f"api key {key[:10]}…"}

    d = get("/api/v1/prompts/support/diff", headers=h, params={"from": 1, "to": 2}).json()
    assert (d["from"], d["to"], d["from_type"], d["to_type"]) == (1, 2, "text", "chat")
    assert "-Answer: {{question}}\n" in d["prompt"] and "+[system]\n" in d["prompt"]
    assert [m["status"] for m in d["messages"]] == ["changed", "added"]
    assert '-  "model": "gpt-4o-mini"\n' in d["config"] and '+  "temperature": 0.2\n' in d["config"]


@pytest.mark.parametrize(("method", "path", "body", "field", "status"), [
    ("post", "/api/v1/prompts", {"prompt": "x"}, "name", 400),
    ("post", "/api/v1/prompts", {"name": "a b", "prompt": "x"}, "name", 400),
    ("post", "/api/v1/prompts", {"name": "ok", "prompt": 5}, "prompt", 400),
    ("post", "/api/v1/prompts", {"name": "ok", "prompt": [{"role": "user", "content": 3}]}, "prompt[0].content", 400),
    ("post", "/api/v1/prompts", {"name": "ok", "prompt": "x", "type": "image"}, "type", 400),
    ("post", "/api/v1/prompts", {"name": "ok", "prompt": "x", "config": "hot"}, "config", 400),
    ("post", "/api/v1/prompts", {"name": "ok", "prompt": "x", "labels": "production"}, "labels", 400),
    ("post", "/api/v1/prompts", {"name": "ok", "prompt": "x", "tags": [None]}, "tags", 400),
    ("post", "/api/v1/prompts/base/labels", {"label": "production", "version": 0}, "version", 400),
    ("post", "/api/v1/prompts/base/labels", {"label": "Prod!", "version": 1}, "label", 400),
    ("post", "/api/v1/prompts/base/labels", {"label": "production", "version": 9}, "version", 404),
    ("get", "/api/v1/prompts/base?version=zero", None, "version", 400),
    ("get", "/api/v1/prompts/base?label=BAD%20LABEL", None, "label", 400),
    ("get", "/api/v1/prompts/base/diff?from=1", None, "to", 400),
    ("post", "/api/v1/prompts/base/playground", {"version": 1, "temperature": 1}, "temperature", 400),
    ("post", "/api/v1/prompts/base/playground", {"version": 1, "model": "m", "variables": {}}, "variables", 400),
    ("post", "/api/v1/prompts/base/playground", {"version": 1, "variables": {"q": "?"}}, "model", 400),
    ("post", "/api/v1/prompts/base/playground", {"version": 1, "model": "m", "variables": {"q": "?"},
                                                 "base_url": "http://169.254.169.254/v1"}, "base_url", 400),
])
def test_bad_input_names_the_field(stack, project, method, path, body, field, status):
    _, h, _ = project
    _create(stack, h, name="base", prompt="Say {{q}}")
    r = getattr(stack.client, method)(path, headers=h, **({"json": body} if body is not None else {}))
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["error"].startswith(f"{field}:"), r.json()
    assert stack.client.get("/api/v1/prompts", headers=h).json()["prompts"][0]["latest_version"] == 1


def test_another_project_cannot_read_or_change_a_prompt(stack, project):
    _, h, _ = project
    _create(stack, h, name="private", prompt="A's secret {{x}}", labels=["production"])
    _, other_key = stack.create_key()
    other = stack.headers(other_key)
    assert stack.client.get("/api/v1/prompts/private", headers=other).status_code == 404
    assert stack.client.get("/api/v1/prompts/private/versions", headers=other).status_code == 404
    assert stack.client.get("/api/v1/prompts/private/labels/history", headers=other).status_code == 404
    assert stack.client.get("/api/v1/prompts", headers=other).json()["prompts"] == []
    assert stack.client.post("/api/v1/prompts/private/labels", headers=other,
                             json={"label": "staging", "version": 1}).status_code == 404
    assert stack.client.post("/api/v1/prompts/private/playground", headers=other,
                             json={"model": "m", "variables": {"x": 1}}).status_code == 404
    assert stack.client.get("/api/v1/prompts/private", headers=h).json()["prompt"] == "A's secret {{x}}"


@pytest.mark.parametrize("role", ["viewer", "member"])
def test_viewers_read_members_write(stack, project, role):
    project_id, h, _ = project
    _create(stack, h, name="shared", prompt="v1")
    user, password = make_user(stack, role, project_id)
    stack.client.cookies.clear()
    try:
        r = login(stack.client, user, password)
        assert r.status_code == 200, r.text
        cookie_headers = {"X-EvalForge-Project": project_id, "X-CSRF-Token": r.json()["csrf_token"]}
        assert stack.client.get("/api/v1/prompts/shared", headers=cookie_headers,
                                params={"label": "latest"}).json()["prompt"] == "v1"
        created = stack.client.post("/api/v1/prompts", headers=cookie_headers, json={"name": "shared", "prompt": "v2"})
        moved = stack.client.post("/api/v1/prompts/shared/labels", headers=cookie_headers,
                                  json={"label": "production", "version": 1})
        if role == "viewer":
            assert (created.status_code, moved.status_code) == (403, 403)
        else:
            assert created.status_code == 201 and created.json()["author"] == user.email
            assert moved.status_code == 200
    finally:
        stack.client.cookies.clear()


def _wait_for_span(stack, project_id: str, trace_id: str):
    deadline = time.monotonic() + 30
    while True:
        rows = stack.clickhouse.query(
            "SELECT prompt_name, prompt_version, model, input_tokens, output_tokens, status, output, input "
            "FROM spans FINAL WHERE project_id = {p:String} AND trace_id = {t:String}",
            parameters={"p": project_id, "t": trace_id}).result_rows
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_playground_calls_the_model_and_records_a_trace_with_the_prompt_version(stack, project, fake_llm):
    project_id, h, _ = project
    name = f"pg-{uuid.uuid4().hex[:6]}"
    _create(stack, h, name=name, prompt=CHAT, config={"model": "gpt-4o-mini", "temperature": 0.3},
            labels=["production"])
    fake_llm.script.append(Reply("Bonjour", input_tokens=42, output_tokens=7))
    r = stack.client.post(f"/api/v1/prompts/{name}/playground", headers=h, json={
        "variables": {"language": "French", "question": "Hello?"}, "base_url": fake_llm.openai_base_url})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["output"] == "Bonjour" and out["prompt"] == {"name": name, "version": 1}
    sent = fake_llm.requests[-1].body
    assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 0.3
    assert sent["messages"] == [{"role": "system", "content": "You answer in French."},
                                {"role": "user", "content": "Hello?"}]
    rows = _wait_for_span(stack, project_id, out["trace_id"])
    assert len(rows) == 1, rows
    prompt_name, prompt_version, model, tin, tout, status, output, _ = rows[0]
    assert (prompt_name, prompt_version, model, tin, tout, status, output) == (name, "1", "gpt-4o-mini", 42, 7, "ok", "Bonjour")

    fake_llm.script.append(Reply(status=400))
    failed = stack.client.post(f"/api/v1/prompts/{name}/playground", headers=h, json={
        "version": 1, "model": "gpt-4o", "variables": {"language": "x", "question": "y"},
        "base_url": fake_llm.openai_base_url})
    assert failed.status_code == 502 and "HTTP 400" in failed.json()["error"]
    trace_id = failed.json()["error"].rsplit("trace ", 1)[1].rstrip(")")
    assert _wait_for_span(stack, project_id, trace_id)[0][5] == "error"


def test_playground_speaks_anthropic_with_the_system_prompt_apart(stack, project, fake_llm, monkeypatch):
    project_id, h, _ = project
    monkeypatch.setattr(stack.services.settings, "judge_api_key", "sk-server-secret")
    name = f"pg-a-{uuid.uuid4().hex[:6]}"
    _create(stack, h, name=name, prompt=CHAT, config={"model": "claude-3-5-haiku", "provider": "anthropic",
                                                     "max_tokens": 50})
    fake_llm.script.append(Reply("Hallo", input_tokens=30, output_tokens=4))
    r = stack.client.post(f"/api/v1/prompts/{name}/playground", headers=h, json={
        "label": "latest", "variables": {"language": "German", "question": "Hi?"},
        "base_url": fake_llm.anthropic_base_url})
    assert r.status_code == 200, r.text
    sent = fake_llm.requests[-1]
    assert sent.path.endswith("/v1/messages") and sent.body["system"] == "You answer in German."
    assert sent.body["messages"] == [{"role": "user", "content": "Hi?"}] and sent.body["max_tokens"] == 50
    assert sent.headers["x-api-key"] == "EMPTY"  # the server's key never goes to a URL a user chose
    rows = _wait_for_span(stack, project_id, r.json()["trace_id"])
    assert rows[0][:5] == (name, "1", "claude-3-5-haiku", 30, 4)


def test_an_ingest_key_reads_one_prompt_by_label_or_version_and_nothing_else(stack, project):
    """What ``evalforge.get_prompt`` needs in an app that holds a send-only key, and no more."""
    _, h, _ = project
    name = f"app-{uuid.uuid4().hex[:6]}"
    _create(stack, h, name=name, prompt="v1 {{q}}", labels=["production"], message="first draft")
    _create(stack, h, name=name, prompt="v2 {{q}}", labels=["staging"])
    made = stack.client.post("/api/v1/api-keys", headers=h, json={"scope": "ingest"})
    assert made.status_code == 201, made.text
    ingest = stack.headers(made.json()["key"])

    by_default = stack.client.get(f"/api/v1/prompts/{name}", headers=ingest)
    assert by_default.status_code == 200, by_default.text
    assert (by_default.json()["version"], by_default.json()["prompt"]) == (1, "v1 {{q}}")
    assert "author" not in by_default.json() and "message" not in by_default.json()  # who wrote it is not the app's
    assert stack.client.get(f"/api/v1/prompts/{name}", headers=ingest, params={"label": "staging"}).json()["prompt"] == "v2 {{q}}"
    assert stack.client.get(f"/api/v1/prompts/{name}", headers=ingest, params={"version": 2}).json()["version"] == 2
    assert stack.client.get(f"/api/v1/prompts/{name}", headers=ingest, params={"label": "nope"}).status_code == 404
    # a full key still sees the author and message
    assert stack.client.get(f"/api/v1/prompts/{name}", headers=h).json()["message"] == "first draft"

    for method, path, body in (
            ("GET", "/api/v1/prompts", None), ("GET", f"/api/v1/prompts/{name}/versions", None),
            ("GET", f"/api/v1/prompts/{name}/labels/history", None),
            ("GET", f"/api/v1/prompts/{name}/diff?from=1&to=2", None),
            ("POST", "/api/v1/prompts", {"name": name, "prompt": "v3"}),
            ("POST", f"/api/v1/prompts/{name}/labels", {"label": "production", "version": 2}),
            ("DELETE", f"/api/v1/prompts/{name}/labels/staging", None),
            ("POST", f"/api/v1/prompts/{name}/playground", {"model": "m", "variables": {"q": 1}})):
        r = stack.client.request(method, path, headers=ingest, json=body)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert "scope 'ingest'" in r.json()["error"]
    # nothing changed, and another project's ingest key cannot read this one's prompt
    assert stack.client.get(f"/api/v1/prompts/{name}", headers=h).json()["version"] == 1
    _, other_key = stack.create_key()
    other_ingest = stack.client.post("/api/v1/api-keys", headers=stack.headers(other_key), json={"scope": "ingest"}).json()["key"]
    assert stack.client.get(f"/api/v1/prompts/{name}", headers=stack.headers(other_ingest)).status_code == 404

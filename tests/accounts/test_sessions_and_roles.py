"""Dashboard sign-in on the real app (PostgreSQL, Redis, chDB): sessions, cookie flags, CSRF, roles
per project, tenant isolation for users, login throttling, passwords at rest."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg

from core.accounts import sha256

from .conftest import cookie_header, login, make_user, signed_in


def test_login_me_logout(client, stack):
    project_id, _ = stack.create_key()
    user, password = make_user(stack, "member", project_id)

    assert client.get("/api/v1/auth/me").status_code == 401
    r = login(client, user, password)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"] == {"id": user.id, "email": user.email, "name": "Ada"}
    assert body["projects"] == [{"id": project_id, "name": body["projects"][0]["name"], "role": "member"}]
    assert client.cookies["ef_csrf"] == body["csrf_token"]
    assert client.get("/api/v1/auth/me").json() == body

    # the email is matched whatever its case; the session token is not in PostgreSQL, only its hash
    token = client.cookies["ef_session"]
    with psycopg.connect(stack.postgres_url) as conn:
        stored = [r[0] for r in conn.execute("SELECT token_hash FROM user_sessions WHERE user_id = %s", (user.id,))]
    assert token not in stored and len(stored) == 1

    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": body["csrf_token"]}).status_code == 204
    assert "ef_session" not in client.cookies
    assert client.get("/api/v1/auth/me").status_code == 401
    # the old cookie, replayed after sign-out, is dead (deleted in PostgreSQL and in the caches)
    replay = {"Cookie": f"ef_session={token}", "X-EvalForge-Project": project_id}
    assert client.get("/api/v1/auth/me", headers=replay).status_code == 401
    assert client.get("/api/v1/traces", headers=replay).status_code == 401


def test_wrong_password_and_unknown_email_get_the_same_401(client, stack):
    user, _ = make_user(stack)
    wrong = login(client, user, "not the password")
    unknown = client.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever1"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "wrong email or password"}
    assert "ef_session" not in client.cookies
    assert client.post("/api/v1/auth/login", json={"email": user.email}).json()["error"].startswith("password")


def test_cookie_flags_and_secure_under_https(client, stack):
    user, password = make_user(stack)
    plain = login(client, user, password)
    session, csrf = cookie_header(plain, "ef_session"), cookie_header(plain, "ef_csrf")
    assert "httponly" in session and "samesite=lax" in session and "path=/" in session and "secure" not in session
    assert "httponly" not in csrf and "samesite=lax" in csrf  # the page's script reads it
    # behind a TLS-terminating proxy, and served over https directly
    proxied = login(client, user, password, headers={"X-Forwarded-Proto": "https"})
    direct = client.post("https://testserver/api/v1/auth/login", json={"email": user.email, "password": password})
    for r in (proxied, direct):
        assert "; secure" in cookie_header(r, "ef_session") and "; secure" in cookie_header(r, "ef_csrf")


def test_state_changing_request_with_the_cookie_needs_the_csrf_header(client, stack):
    project_id, headers = signed_in(client, stack, "admin")
    without = {"X-EvalForge-Project": project_id}
    refused = client.post("/api/v1/api-keys", headers=without, json={"scope": "ingest"})
    assert refused.status_code == 403 and refused.json() == {"error": "CSRF token missing or wrong"}
    wrong = client.post("/api/v1/api-keys", headers={**without, "X-CSRF-Token": "x" * 43}, json={})
    assert wrong.status_code == 403
    made = client.post("/api/v1/api-keys", headers=headers, json={"scope": "ingest"})
    assert made.status_code == 201, made.text
    # nothing was created by the refused requests: exactly one key (the stack's) plus the new one
    keys = client.get("/api/v1/api-keys", headers=without).json()["keys"]
    assert sorted(k["scope"] for k in keys) == ["full", "ingest"]
    # the new key works for ingest on its own, without cookie or CSRF token
    client.cookies.clear()
    span = {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "name": "s",
            "start_time": time.time_ns() - 10**6, "end_time": time.time_ns()}
    sent = client.post("/api/v1/spans", headers={"Authorization": f"Bearer {made.json()['key']}"}, json={"spans": [span]})
    assert sent.status_code == 200, sent.text


def test_another_site_cannot_sign_in_or_out_in_the_browser(client, stack):
    user, password = make_user(stack)
    # an HTML form can only send form or text/plain bodies: login reads JSON only (no login CSRF)
    form = client.post("/api/v1/auth/login", content=f'{{"email": "{user.email}", "password": "{password}"}}',
                       headers={"Content-Type": "text/plain"})
    assert form.status_code == 400 and "ef_session" not in client.cookies
    body = login(client, user, password).json()
    assert client.post("/api/v1/auth/logout").status_code == 403  # no CSRF header: still signed in
    assert client.get("/api/v1/auth/me").json()["user"]["id"] == body["user"]["id"]


def test_bearer_keys_need_no_csrf_and_win_over_a_cookie(client, stack):
    project_id, key = stack.create_key()
    signed_in(client, stack, "viewer")  # a viewer's cookie is in the jar
    r = client.post("/api/v1/eval-rules", headers=stack.headers(key), json={"name": "json", "evaluator": "json_valid"})
    assert r.status_code == 201, r.text
    assert client.get("/api/v1/projects/current", headers=stack.headers(key)).json()["id"] == project_id


def test_viewer_reads_but_cannot_write_or_manage_keys(client, stack):
    project_id, headers = signed_in(client, stack, "viewer")
    assert client.get("/api/v1/traces", headers=headers).status_code == 200
    assert client.get("/api/v1/eval-rules", headers=headers).status_code == 200
    assert client.get("/api/v1/projects/current", headers=headers).json() == {
        "id": project_id, "name": client.get("/api/v1/projects/current", headers=headers).json()["name"],
        "role": "viewer"}
    # a query sent as POST is still a read
    compare = client.post("/api/v1/compare", headers=headers, json={"metric": "latency", "a": {}, "b": {}})
    assert compare.status_code == 200, compare.text
    for method, path, body in (("POST", "/api/v1/api-keys", {}), ("GET", "/api/v1/api-keys", None),
                               ("POST", "/api/v1/eval-rules", {"name": "n", "evaluator": "json_valid"}),
                               ("POST", "/api/v1/scores", {"scores": []}),
                               ("PUT", "/api/v1/model-prices", {"model": "m", "prices": {"input": 1}})):
        r = client.request(method, path, headers=headers, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert "viewer" in r.json()["error"]


def test_member_writes_data_but_not_keys_or_prices(client, stack):
    _, headers = signed_in(client, stack, "member")
    # a human score from the dashboard goes through the same ingest endpoint as the SDK's
    score = client.post("/api/v1/scores", headers=headers, json={"name": "thumbs", "value": True,
                                                                  "trace_id": uuid.uuid4().hex})
    assert score.status_code == 202, score.text
    assert client.post("/api/v1/scores", headers={"X-EvalForge-Project": headers["X-EvalForge-Project"]},
                       json={"name": "thumbs", "value": True, "trace_id": uuid.uuid4().hex}).status_code == 403
    rule = client.post("/api/v1/eval-rules", headers=headers, json={"name": "json", "evaluator": "json_valid"})
    assert rule.status_code == 201, rule.text
    assert client.delete(f"/api/v1/eval-rules/{rule.json()['id']}", headers=headers).status_code == 200
    assert client.post("/api/v1/api-keys", headers=headers, json={}).status_code == 403
    assert client.put("/api/v1/model-prices", headers=headers,
                      json={"model": "m", "prices": {"input": 1}}).status_code == 403
    assert client.get("/api/v1/model-prices", headers=headers).status_code == 200


def test_user_of_project_a_gets_404_for_project_b(client, stack):
    project_b, key_b = stack.create_key()
    trace_b = uuid.uuid4().hex
    now = datetime.now(timezone.utc)
    stack.insert_spans([{"project_id": project_b, "trace_id": trace_b, "span_id": uuid.uuid4().hex[:16],
                         "name": "b-secret", "start_time": now - timedelta(seconds=1), "end_time": now,
                         "ingested_at": now, "status": "ok"}])
    assert client.get(f"/api/v1/traces/{trace_b}", headers=stack.headers(key_b)).status_code == 200

    project_a, headers = signed_in(client, stack, "owner")
    other = {**headers, "X-EvalForge-Project": project_b}
    for path in (f"/api/v1/traces/{trace_b}", "/api/v1/traces", "/api/v1/api-keys", "/api/v1/eval-rules",
                 f"/api/v1/traces/{trace_b}?project=x"):
        r = client.get(path, headers=other)
        assert r.status_code == 404 and "b-secret" not in r.text, (path, r.text)
    assert client.post("/api/v1/api-keys", headers=other, json={}).status_code == 404
    # a plain link names the project in the query string instead of the header
    assert client.get(f"/api/v1/traces/{trace_b}?project={project_b}").status_code == 404
    assert client.get(f"/api/v1/traces?project={project_a}").status_code == 200
    export_a = client.get(f"/api/v1/export?project={project_a}&format=jsonl")
    assert export_a.status_code == 200 and export_a.text == ""  # A has no spans; B's are not exported
    assert client.get(f"/api/v1/export?project={project_b}&format=jsonl").status_code == 404
    # in the user's own project, B's trace does not exist either
    assert client.get(f"/api/v1/traces/{trace_b}", headers=headers).status_code == 404
    # without naming a project, the request is refused naming the header
    missing = client.get("/api/v1/traces")
    assert missing.status_code == 400 and "X-EvalForge-Project" in missing.json()["error"]


def test_repeated_wrong_passwords_are_throttled(client, stack):
    user, password = make_user(stack)
    limit = stack.settings.login_max_failures
    for _ in range(limit):
        assert login(client, user, "wrong password").status_code == 401
    r = login(client, user, password)  # even the right password waits now
    assert r.status_code == 429
    assert 0 < int(r.headers["Retry-After"]) <= stack.settings.login_lockout_seconds
    assert "ef_session" not in client.cookies
    # another account from the same address is not locked by this one's failures
    other, other_password = make_user(stack)
    assert login(client, other, other_password).status_code == 200


def test_failures_per_address_are_throttled_across_emails(client, stack):
    ip_limit = stack.settings.login_max_failures_per_ip
    for i in range(ip_limit):
        r = client.post("/api/v1/auth/login", json={"email": f"guess{i}@example.com", "password": "guess-guess"})
        assert r.status_code == 401
    user, password = make_user(stack)
    r = login(client, user, password)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def test_passwords_are_stored_as_argon2_hashes_and_nowhere_in_clear(client, stack):
    password = f"clear-text-{uuid.uuid4().hex}"
    user, _ = make_user(stack, password=password)
    assert login(client, user, password).status_code == 200
    with psycopg.connect(stack.postgres_url) as conn:
        stored = conn.execute("SELECT password_hash FROM users WHERE id = %s", (user.id,)).fetchone()[0]
        assert stored.startswith("$argon2id$")
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        for table in tables:  # every row of every table, as text
            hits = conn.execute(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE %s', (f"%{password}%",))
            assert hits.fetchone()[0] == 0, table


def test_projects_list_and_create(client, stack):
    project_id, headers = signed_in(client, stack, "viewer")
    assert [p["id"] for p in client.get("/api/v1/projects").json()] == [project_id]
    made = client.post("/api/v1/projects", headers=headers, json={"name": f"mine-{uuid.uuid4().hex[:8]}"})
    assert made.status_code == 201, made.text
    assert made.json()["role"] == "owner"
    listed = {p["id"]: p["role"] for p in client.get("/api/v1/projects").json()}
    assert listed == {project_id: "viewer", made.json()["id"]: "owner"}
    # an existing name is refused (the caller does not join that project)
    taken = client.post("/api/v1/projects", headers=headers, json={"name": made.json()["name"]})
    assert taken.status_code == 409 and taken.json()["error"].startswith("name")
    assert client.post("/api/v1/projects", headers=headers, json={"name": " "}).json()["error"].startswith("name")
    # the new project's owner can make keys there
    new_headers = {**headers, "X-EvalForge-Project": made.json()["id"]}
    assert client.post("/api/v1/api-keys", headers=new_headers, json={}).status_code == 201
    # an API key sees its own project and cannot create projects
    _, key = stack.create_key()
    client.cookies.clear()
    assert len(client.get("/api/v1/projects", headers=stack.headers(key)).json()) == 1
    assert client.post("/api/v1/projects", headers=stack.headers(key), json={"name": "x"}).status_code == 403


def test_an_expired_session_is_refused(client, stack):
    project_id, _ = signed_in(client, stack, "member")
    with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE user_sessions SET expires_at = now() - interval '1 second' WHERE token_hash = %s",
                     (sha256(client.cookies["ef_session"]),))
    assert client.get("/api/v1/auth/me").status_code == 401
    assert client.get("/api/v1/traces", headers={"X-EvalForge-Project": project_id}).status_code == 401


def test_a_hash_made_with_weaker_parameters_is_upgraded_at_sign_in(client, stack):
    from argon2 import PasswordHasher

    user, password = make_user(stack)
    weak = PasswordHasher(time_cost=1, memory_cost=8192).hash(password)
    with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (weak, user.id))
        assert login(client, user, password).status_code == 200
        upgraded = conn.execute("SELECT password_hash FROM users WHERE id = %s", (user.id,)).fetchone()[0]
    assert upgraded != weak and not PasswordHasher().check_needs_rehash(upgraded)
    client.cookies.clear()
    assert login(client, user, password).status_code == 200


def test_changing_the_password_ends_every_other_session_at_once(client, stack):
    user, password = make_user(stack)
    old = login(client, user, password)
    old_token = client.cookies["ef_session"]
    client.cookies.clear()
    assert client.get("/api/v1/auth/me", headers={"Cookie": f"ef_session={old_token}"}).status_code == 200  # cached now
    csrf = login(client, user, password).json()["csrf_token"]
    assert old.json()["csrf_token"] != csrf

    change = "/api/v1/auth/password"
    wrong = client.post(change, headers={"X-CSRF-Token": csrf}, json={"current_password": "nope", "new_password": "x" * 12})
    assert wrong.status_code == 400 and wrong.json()["error"].startswith("current_password")
    short = client.post(change, headers={"X-CSRF-Token": csrf}, json={"current_password": password, "new_password": "x"})
    assert short.status_code == 400 and short.json()["error"].startswith("new_password")
    assert client.post(change, json={"current_password": password, "new_password": "y" * 12}).status_code == 403
    done = client.post(change, headers={"X-CSRF-Token": csrf}, json={"current_password": password, "new_password": "new one 12"})
    assert done.status_code == 200, done.text

    assert client.get("/api/v1/auth/me").status_code == 200  # this browser got a new session
    current = client.cookies["ef_session"]
    client.cookies.clear()
    assert client.get("/api/v1/auth/me", headers={"Cookie": f"ef_session={old_token}"}).status_code == 401
    assert client.get("/api/v1/auth/me", headers={"Cookie": f"ef_session={current}"}).status_code == 200
    assert login(client, user, password).status_code == 401
    assert login(client, user, "new one 12").status_code == 200

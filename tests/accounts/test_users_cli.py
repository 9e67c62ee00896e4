"""`evalforge users create|reset-password` run as a user runs them (a subprocess against the test
PostgreSQL), and the admin user the first `evalforge up` creates."""

from __future__ import annotations

import stat
import subprocess
import uuid

import httpx
import psycopg

from core.auth import read_credentials
from core.embedded import EmbeddedPostgres

from tests.test_cli import CLI, REPO, Up, _env


def _users(postgres_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "users", *args], cwd=REPO, env=_env(EVALFORGE_POSTGRES_URL=postgres_url),
                          input=stdin, capture_output=True, text=True, timeout=120)


def _login(client, email: str, password: str) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def test_users_create_with_a_password_from_stdin_and_a_role(client, stack):
    project = f"cli-{uuid.uuid4().hex[:8]}"
    email = f"Cli-{uuid.uuid4().hex[:8]}@Example.com"
    made = _users(stack.postgres_url, "create", "--email", email, "--name", "Cli User", "--project", project,
                  "--role", "viewer", stdin="from stdin 123\n")
    assert made.returncode == 0, made.stderr
    assert "from stdin 123" not in made.stdout  # a chosen password is not echoed
    r = _login(client, email, "from stdin 123")
    assert r.status_code == 200, r.text
    assert r.json()["user"]["name"] == "Cli User"
    assert [(p["name"], p["role"]) for p in r.json()["projects"]] == [(project, "viewer")]

    listed = _users(stack.postgres_url, "list")
    assert listed.returncode == 0
    assert f"{email.lower()}\tCli User\t{project}:viewer" in listed.stdout.splitlines()
    assert "from stdin 123" not in listed.stdout and "$argon2" not in listed.stdout

    again = _users(stack.postgres_url, "create", "--email", email.lower(), stdin="another one 1\n")
    assert again.returncode != 0 and "email" in again.stderr
    short = _users(stack.postgres_url, "create", "--email", f"x-{uuid.uuid4().hex[:6]}@e.com", stdin="short\n")
    assert short.returncode != 0 and "password" in short.stderr
    assert _users(stack.postgres_url, "create", "--email", "a@b.c", "--role", "admin").returncode != 0


def test_users_create_generates_a_password_and_prints_it_once(client, stack):
    email = f"gen-{uuid.uuid4().hex[:8]}@example.com"
    made = _users(stack.postgres_url, "create", "--email", email)
    assert made.returncode == 0, made.stderr
    password = made.stdout.strip().splitlines()[-1].split(": ", 1)[1]
    assert len(password) >= 16
    assert _login(client, email, password).status_code == 200
    with psycopg.connect(stack.postgres_url) as conn:
        stored = conn.execute("SELECT password_hash FROM users WHERE email = %s", (email,)).fetchone()[0]
    assert stored.startswith("$argon2id$") and password not in stored


def test_reset_password_replaces_it_and_ends_sessions(client, stack):
    email = f"reset-{uuid.uuid4().hex[:8]}@example.com"
    assert _users(stack.postgres_url, "create", "--email", email, stdin="first password\n").returncode == 0
    assert _login(client, email, "first password").status_code == 200

    reset = _users(stack.postgres_url, "reset-password", "--email", email.upper(), stdin="second password\n")
    assert reset.returncode == 0, reset.stderr
    with psycopg.connect(stack.postgres_url) as conn:
        sessions = conn.execute("SELECT count(*) FROM user_sessions s JOIN users u ON u.id = s.user_id "
                                "WHERE u.email = %s", (email,)).fetchone()[0]
    assert sessions == 0  # running servers drop their cached copy within auth_cache_seconds
    client.cookies.clear()
    assert _login(client, email, "first password").status_code == 401
    assert _login(client, email, "second password").status_code == 200

    generated = _users(stack.postgres_url, "reset-password", "--email", email)
    assert generated.returncode == 0
    assert _login(client, email, generated.stdout.strip().splitlines()[-1].split(": ", 1)[1]).status_code == 200
    missing = _users(stack.postgres_url, "reset-password", "--email", "nobody@example.com", stdin="whatever1\n")
    assert missing.returncode == 1 and "no user" in missing.stderr


def test_first_up_creates_the_admin_prints_the_password_and_writes_credentials(data_dir):
    up = Up(data_dir)
    up.start()
    try:
        cred = data_dir / "credentials"
        assert stat.S_IMODE(cred.stat().st_mode) == 0o600
        values = read_credentials(cred)
        assert values["EVALFORGE_ADMIN_EMAIL"] == "admin@localhost"
        password = values["EVALFORGE_ADMIN_PASSWORD"]
        with httpx.Client(base_url=up.url) as http:
            r = http.post("/api/v1/auth/login", json={"email": "admin@localhost", "password": password})
            assert r.status_code == 200, r.text
            assert [(p["name"], p["role"]) for p in r.json()["projects"]] == [("default", "owner")]
            # the admin sees what the bootstrap key sends: the same project
            key_project = http.get("/api/v1/projects/current",
                                   headers={"Authorization": f"Bearer {values['EVALFORGE_API_KEY']}"}).json()
            assert key_project["id"] == r.json()["projects"][0]["id"]
    finally:
        assert up.stop() == 0
    assert password in up.output and values["EVALFORGE_API_KEY"] in up.output

    up2 = Up(data_dir)
    up2.start()
    assert up2.stop() == 0
    assert password not in up2.output  # shown once
    assert read_credentials(cred) == values

    # a data dir from before accounts existed (a key, no user): the next start makes the admin
    pg = EmbeddedPostgres(data_dir.resolve() / "postgres")
    try:
        with psycopg.connect(pg.start(), autocommit=True) as conn:
            conn.execute("DELETE FROM users")
    finally:
        pg.stop()
    up3 = Up(data_dir)
    up3.start()
    try:
        again = read_credentials(cred)
        assert again["EVALFORGE_API_KEY"] == values["EVALFORGE_API_KEY"]
        assert again["EVALFORGE_ADMIN_PASSWORD"] != password and cred.read_text().count("ADMIN_PASSWORD") == 1
        assert stat.S_IMODE(cred.stat().st_mode) == 0o600
        r = httpx.post(f"{up3.url}/api/v1/auth/login",
                       json={"email": "admin@localhost", "password": again["EVALFORGE_ADMIN_PASSWORD"]})
        assert r.status_code == 200, r.text
    finally:
        assert up3.stop() == 0
    assert again["EVALFORGE_ADMIN_PASSWORD"] in up3.output

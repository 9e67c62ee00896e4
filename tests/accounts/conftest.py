"""Helpers for the accounts tests, on the session's ``stack`` (tests/conftest.py): users made in
PostgreSQL, signed in through the real login endpoint."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
import redis

from core.accounts import LoginThrottle, create_user, set_membership


@pytest.fixture
def data_dir():
    # PostgreSQL runs as another user when we are root, so not under pytest's 0700 tmp dir.
    path = Path(f"/tmp/evalforge-accounts-{uuid.uuid4().hex[:8]}")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture
def client(stack):
    """The stack's client with an empty cookie jar and no failed-login counts (all tests share an address)."""

    def reset():
        stack.client.cookies.clear()
        with redis.Redis.from_url(stack.settings.redis_url) as r:
            for key in r.scan_iter(LoginThrottle.PREFIX + "*"):
                r.delete(key)

    reset()
    yield stack.client
    reset()


def make_user(stack, role: str | None = None, project_id: str | None = None, password: str = "correct horse 1"):
    """A new user (unique email), optionally a member of ``project_id`` with ``role``."""
    email = f"u-{uuid.uuid4().hex[:10]}@example.com"
    with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
        user = create_user(conn, email, password, name="Ada")
        if role:
            set_membership(conn, project_id, user.id, role)
    return user, password


def login(client, user, password, **kw):
    return client.post("/api/v1/auth/login", json={"email": user.email, "password": password}, **kw)


def signed_in(client, stack, role: str, project_id: str | None = None):
    """A user with ``role`` in a project (new unless given), signed in: (project_id, csrf headers)."""
    if project_id is None:
        project_id, _ = stack.create_key()
    user, password = make_user(stack, role, project_id)
    r = login(client, user, password)
    assert r.status_code == 200, r.text
    return project_id, {"X-EvalForge-Project": project_id, "X-CSRF-Token": r.json()["csrf_token"]}


def cookie_header(response, name: str) -> str:
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(headers) == 1, response.headers.get_list("set-cookie")
    return headers[0].lower()

"""core.request_guard.check_request on a bare app: a NUL in the path, the query, a JSON body (value or
key, at any depth) or a form body is a 400 naming the field before the handler runs."""

from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI, Request
from starlette.testclient import TestClient

from core.http import install_error_handlers
from core.request_guard import check_request


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    install_error_handlers(app)
    calls = []

    @app.api_route("/things/{name}", methods=["GET", "POST"], dependencies=[Depends(check_request)])
    async def things(name: str, request: Request) -> dict:
        calls.append(await request.body())  # the handler still reads the body the guard read
        return {"ok": True, "body": len(calls[-1])}

    with TestClient(app) as c:
        c.calls = calls
        yield c


@pytest.mark.parametrize("kwargs,field", [
    ({"url": "/things/a%00b"}, "path"),
    ({"url": "/things/x?q=a%00b"}, "q"),
    ({"url": "/things/x", "method": "POST", "json": {"rule": {"filters": [{"model": "gpt\x00"}]}}}, "rule.filters[0].model"),
    ({"url": "/things/x", "method": "POST", "json": {"meta": {"k\x00": 1}}}, "meta.k\\0"),
    ({"url": "/things/x", "method": "POST", "data": {"user": "a\x00b"}}, "user"),
])
def test_nul_is_refused_naming_the_field(client, kwargs, field):
    r = client.request(kwargs.pop("method", "GET"), kwargs.pop("url"), **kwargs)
    assert r.status_code == 400
    assert r.json()["error"].startswith(f"{field}: must not contain a NUL")


@pytest.mark.parametrize("body,prefix", [
    (b'{"rule": {"filter": {"model": ' + b"[" * 100 + b"]" * 100 + b"}}}", "rule.filter.model[0][0]"),
    (b'{"a": ' + b'{"b": ' * 70 + b"1" + b"}" * 70 + b"}", "a.b.b.b"),
    (b"[" * 2000 + b"]" * 2000, "body"),
])
def test_json_nested_too_deep_is_refused_naming_where(client, body, prefix):
    r = client.post("/things/x", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error.startswith(prefix) and error.endswith("nested more than 64 levels deep"), error


def test_clean_requests_reach_the_handler_with_their_body(client):
    nested = {"a": [[[{"b": [[1]]}]]]}  # nests, well within the limit
    r = client.post("/things/x?q=ok", json={"text": "no nul here, \\u0000 as text is fine", "n": nested,
                                            "brackets": "[" * 100})
    assert r.status_code == 200 and r.json()["body"] > 0

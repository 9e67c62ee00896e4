"""Fuzz every operation of ``/openapi.json`` of ``evalforge up``'s app (real chDB, PostgreSQL, Redis, S3
endpoint, Redis Streams bus) with a valid key, as an attacker would: no answer may be a 5xx.

Schemathesis generates the requests from the schema, a bounded number per operation (the run takes
about a minute); they go through the session's one app, whose services live on its event loop, so
the cases are drawn here with Hypothesis rather than sent by schemathesis' own ASGI transport (which
would start the app anew per call). The app's own contract (400 naming the field) is tested elsewhere.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES_PER_OPERATION = 20


def _send(stack, case, key: str):
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    headers = {**(kwargs.pop("headers", None) or {}), "Authorization": f"Bearer {key}"}
    body = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        body["content" if isinstance(data, (bytes, str)) else "data"] = data
    if kwargs.get("cookies"):
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in kwargs["cookies"].items())
    return stack.client.request(kwargs["method"], kwargs["url"], headers=headers, params=kwargs.get("params"), **body)


def test_no_operation_answers_5xx(stack):
    _, key = stack.create_key()
    schema = schemathesis.openapi.from_dict(stack.client.get("/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20  # ingest, query, admin and evaluation routers are all in the schema
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            response = _send(stack, case, key)
            assert response.status_code < 500, (f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                                f"{response.text[:300]}\n{case.as_curl_command()}")

        try:
            fuzz()
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)

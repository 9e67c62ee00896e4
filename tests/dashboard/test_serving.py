"""The query API serves the built dashboard, and the endpoints the dashboard added."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.dashboard.seed import BIG_MARKER


def test_client_routes_get_index_without_cache_and_assets_are_immutable(live):
    for path in ("/", "/sign-in", "/projects/abc/traces", "/projects/abc/traces/0123?span=1"):
        r = httpx.get(live.url + path)
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == "no-cache"
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert '<div id="root">' in r.text
    index = httpx.get(live.url + "/").text
    scripts = re.findall(r'src="/assets/([^"]+\.js)"', index)
    assert scripts
    raw = httpx.get(f"{live.url}/assets/{scripts[0]}", headers={"Accept-Encoding": "identity"})
    packed = httpx.get(f"{live.url}/assets/{scripts[0]}", headers={"Accept-Encoding": "gzip"})
    assert raw.status_code == packed.status_code == 200
    assert raw.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert packed.headers["content-encoding"] == "gzip" and packed.content == raw.content  # httpx decodes
    assert raw.headers["content-type"].startswith(("text/javascript", "application/javascript"))


def test_api_and_ops_paths_never_fall_back_to_the_app(live):
    for path in ("/api/v1/no-such-thing", "/v1/nope", "/assets/missing.js", "/favicon.ico", "/docs/x"):
        r = httpx.get(live.url + path)
        assert r.status_code == 404, path
        assert '<div id="root">' not in r.text
    assert httpx.get(live.url + "/api/v1/traces").status_code == 401  # still the API, still authenticated
    assert httpx.get(live.url + "/healthz").json()["status"] in ("ok", "degraded")


def test_trace_without_payloads_and_one_span_in_full(live, data):
    with live.api(data.key) as api:
        light = api.get(f"/api/v1/traces/{data.big_trace}", params={"payloads": "false"}).json()
        [root] = light["spans"]
        assert "input" not in root and "attributes" not in root and root["input_preview"]
        full = api.get(f"/api/v1/traces/{data.big_trace}/spans/{root['span_id']}")
        assert full.status_code == 200
        assert full.json()["input"] == data.big_text and full.json()["input"].endswith(BIG_MARKER)
        assert api.get(f"/api/v1/traces/{data.big_trace}/spans/ffffffffffffffff").status_code == 404
        assert api.get(f"/api/v1/traces/{data.big_trace}", params={"payloads": "maybe"}).status_code == 400
        assert api.get(f"/api/v1/traces/{data.big_trace}", params={"nope": "1"}).status_code == 400


def test_span_of_another_project_is_not_found(live, data):
    _, other_key = live.create_project()
    with live.api(other_key) as api:
        light = api.get(f"/api/v1/traces/{data.chat_trace}")
        assert light.status_code == 404
        with live.api(data.key) as owner:
            span_id = owner.get(f"/api/v1/traces/{data.chat_trace}").json()["spans"][0]["span_id"]
        assert api.get(f"/api/v1/traces/{data.chat_trace}/spans/{span_id}").status_code == 404


def test_attribute_and_metadata_filters(live, data):
    with live.api(data.key) as api:
        by_meta = api.get("/api/v1/traces", params={"metadata": "region=eu", "limit": 100}).json()["data"]
        by_attr = api.get("/api/v1/traces", params={"attribute": "metadata.region=eu", "limit": 100}).json()["data"]
        none = api.get("/api/v1/traces", params={"metadata": "region=us", "limit": 100}).json()["data"]
        assert len(by_meta) == len(by_attr) == 12 and none == []
        assert {t["trace_id"] for t in by_meta} == {t["trace_id"] for t in by_attr}
        bad = api.get("/api/v1/traces", params={"metadata": "no-equals-sign"})
        assert bad.status_code == 400 and "metadata" in bad.json()["error"]
        spans = api.get("/api/v1/metrics", params={"metric": "requests", "metadata": "region=eu"}).json()["data"]
        assert spans[0]["value"] == 12  # one llm-call span per trace carries it


def test_span_cost_per_token_type_adds_up_to_its_cost(live, data):
    with live.api(data.key) as api:
        trace = api.get(f"/api/v1/traces/{data.chat_trace}", params={"payloads": "false"}).json()
        llm = next(c for c in trace["spans"][0]["children"] if c["kind"] == "llm")
        span = api.get(f"/api/v1/traces/{data.chat_trace}/spans/{llm['span_id']}").json()
    assert span["cost_source"] == "computed" and span["cost"] > 0
    details = span["cost_details"]
    assert set(details) <= {"input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "reasoning"}
    assert details["input"] > 0 and details["output"] > 0
    assert sum(details.values()) == pytest.approx(span["cost"], rel=1e-12)

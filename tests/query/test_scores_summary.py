"""GET /api/v1/scores/summary: numeric and categorical distributions, filtered and grouped."""

from __future__ import annotations

import numpy as np
import pytest


def test_numeric_and_categorical(api, project_a):
    body = api(project_a.key).get("/scores/summary").json()
    rows = {r["name"]: r for r in body["data"]}
    values = np.array([s["value"] for s in project_a.scores if s["name"] == "helpfulness"])
    h = rows["helpfulness"]
    assert h["count"] == values.size
    assert h["mean"] == pytest.approx(values.mean(), rel=1e-9)
    assert h["p50"] == pytest.approx(np.percentile(values, 50), rel=1e-9)
    assert h["min"] == pytest.approx(values.min()) and h["max"] == pytest.approx(values.max())
    assert sum(b["count"] for b in h["histogram"]) == pytest.approx(values.size)
    tone = {v["value"]: v["count"] for v in rows["tone"]["values"]}
    expected = {"polite": 0, "rude": 0}
    for s in project_a.scores:
        if s["name"] == "tone":
            expected[s["string_value"]] += 1
    assert tone == expected and rows["tone"]["mean"] is None


def test_filtered_by_span_attributes_and_grouped(api, project_a):
    v2 = api(project_a.key).get("/scores/summary", params={"score_name": "helpfulness", "release": "v2"}).json()
    releases = {s["trace_id"]: s["release"] for s in project_a.spans if s["parent_span_id"] == ""}
    expected = [s["value"] for s in project_a.scores if s["name"] == "helpfulness" and releases[s["trace_id"]] == "v2"]
    [row] = v2["data"]
    assert row["count"] == len(expected) and row["mean"] == pytest.approx(np.mean(expected), rel=1e-9)
    grouped = api(project_a.key).get("/scores/summary", params={"group_by": "data_type"}).json()
    assert {(r["name"], r["group"]["data_type"]) for r in grouped["data"]} == {
        ("helpfulness", "numeric"), ("tone", "categorical")}
    bad = api(project_a.key).get("/scores/summary", params={"group_by": "user_id"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("group_by:")

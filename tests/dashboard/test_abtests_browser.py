"""The "A/B tests" page in Chromium: the results it shows are the API's numbers; create, ramp, stop and
declare a winner from the page change the test as the API then reports it."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tests.dashboard.conftest import span

pytestmark = pytest.mark.timeout(240)


def _number(text: str) -> float:
    return float(re.search(r"-?[\d.,]+(e-?\d+)?", text).group(0).replace(",", ""))


@pytest.fixture(scope="module")
def ab_project(live):
    project_id, key = live.create_project()
    with live.api(key) as api:
        test = api.post("/api/v1/ab-tests", json={
            "name": "checkout-model", "start": True, "primary_metric": {"kind": "latency"},
            "design": {"type": "fixed", "mde": 30},
            "variants": [{"name": "control", "weight": 1, "model": "gpt-4o"},
                         {"name": "mini", "weight": 1, "model": "gpt-4o-mini"}]}).json()
    rng = np.random.default_rng(4)
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    records = []
    for variant, mean, n in (("control", 300, 120), ("mini", 285, 140)):
        for ms in rng.normal(mean, 40, n):
            records.append(span(project_id, uuid.uuid4().hex, uuid.uuid4().hex[:16], "", now, float(round(ms)),
                                name="chat", kind="llm", model="gpt-4o",
                                attributes={"evalforge.ab.test": "checkout-model", "evalforge.ab.variant": variant}))
    live.insert_spans(records)
    return project_id, key, test


def test_results_on_the_page_are_the_apis(live, ab_project, page_for):
    project_id, key, test = ab_project
    with live.api(key) as api:
        expected = api.get(f"/api/v1/ab-tests/{test['id']}/results").json()
    page = page_for(key)
    page.goto(f"/projects/{project_id}/ab-tests?test={test['id']}")
    page.get_by_test_id("ab-results").wait_for()
    for variant in expected["variants"]:
        row = page.locator(f"[data-testid=ab-variant-row][data-variant={variant['name']}]")
        assert _number(row.get_by_test_id("ab-n").inner_text()) == variant["n"]
        assert _number(row.get_by_test_id("ab-observations").inner_text()) == variant["observations"]
        assert _number(row.get_by_test_id("ab-value").inner_text()) == pytest.approx(variant["primary"]["mean"], rel=1e-5)
    (comparison,) = expected["comparisons"]
    row = page.locator("[data-testid=ab-comparison-row][data-variant=mini]")
    assert _number(row.get_by_test_id("ab-p").inner_text()) == pytest.approx(comparison["p_value"], rel=1e-3)
    assert row.get_by_test_id("ab-significant").inner_text() == ("yes" if comparison["significant"] else "no")
    assert comparison["verdict"] in row.inner_text()
    assert page.get_by_test_id("ab-verdict").inner_text() == expected["verdict"]
    assert not page.js_errors


def test_ramp_stop_and_winner_from_the_page(live, ab_project, page_for):
    project_id, key, test = ab_project
    page = page_for(key)
    page.goto(f"/projects/{project_id}/ab-tests?test={test['id']}")
    page.get_by_label("Weight of control").fill("3")
    page.get_by_label("Weight of mini").fill("1")
    page.get_by_role("button", name="Ramp").click()
    page.get_by_test_id("ab-tests-table").get_by_text("control 75% · mini 25%").wait_for()
    page.get_by_role("button", name="Stop").click()
    page.get_by_test_id("ab-detail").get_by_text("· stopped").wait_for()
    page.get_by_test_id("ab-tests-table").get_by_text("control 100% · mini 0%").wait_for()
    page.get_by_label("Winning variant").select_option("mini")
    page.get_by_role("button", name="Declare winner").click()
    page.get_by_test_id("ab-tests-table").get_by_text("completed (winner: mini)").wait_for()
    with live.api(key) as api:
        final = api.get(f"/api/v1/ab-tests/{test['id']}").json()
    assert final["status"] == "completed" and final["winner"] == "mini"
    assert [e["action"] for e in final["history"]] == ["create", "ramp", "stop", "winner"]
    assert [v["weight"] for v in final["variants"]] == [3, 1]
    assert [v["traffic"] for v in final["variants"]] == [0, 1]  # the winner is served to everyone
    assert not page.js_errors


def test_create_from_the_page_and_bad_input_inline(live, page_for):
    project_id, key = live.create_project()
    page = page_for(key)
    page.goto(f"/projects/{project_id}/ab-tests")
    page.get_by_label("Test name").fill("new-prompt")
    page.get_by_label("Variants (name weight [model], one a line)").fill("control 90\ncandidate 10 gpt-4o-mini")
    page.get_by_label("Primary metric").select_option("error_rate")
    page.get_by_label("Minimum detectable effect").fill("abc")
    page.get_by_role("button", name="Create A/B test").click()
    page.get_by_role("alert").filter(has_text="design.mde").wait_for()  # the API's 400, inline
    page.get_by_label("Minimum detectable effect").fill("0.02")
    page.get_by_role("button", name="Create A/B test").click()
    page.get_by_test_id("ab-results").wait_for()
    with live.api(key) as api:
        (created,) = api.get("/api/v1/ab-tests").json()["tests"]
    assert created["name"] == "new-prompt" and created["status"] == "draft"
    assert [(v["name"], v["traffic"], v.get("model")) for v in created["variants"]] == [
        ("control", 0.9, None), ("candidate", 0.1, "gpt-4o-mini")]
    page.get_by_role("button", name="Start").click()
    page.get_by_test_id("ab-detail").get_by_text("· running").wait_for()

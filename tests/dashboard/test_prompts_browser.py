"""The Prompts page in Chromium: a member creates versions, views one, diffs two, moves a label and
runs the playground (whose refused request shows inline with a retry); a viewer only reads."""

from __future__ import annotations

import uuid

import psycopg
import pytest

pytestmark = pytest.mark.timeout(240)
PASSWORD = "correct horse battery staple"


def _signed_in(browser, live, role: str):
    """A new project, a user with ``role`` in it signed in through the sign-in form: (ctx, page, project_id, key)."""
    from core.accounts import create_user, set_membership

    project_id, key = live.create_project()
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    with psycopg.connect(live.postgres_url, autocommit=True) as conn:
        user = create_user(conn, email, PASSWORD, name=role.title())
        set_membership(conn, project_id, user.id, role)
    ctx = browser.new_context(base_url=live.url, viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    page.goto("/")
    page.wait_for_url("**/sign-in**")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/projects/**")
    return ctx, page, project_id, key, email


def test_member_creates_views_diffs_and_moves_labels(browser, live):
    ctx, page, project_id, key, email = _signed_in(browser, live, "member")
    try:
        page.goto(f"/projects/{project_id}/prompts")
        page.get_by_text("No prompts yet").wait_for()
        form = page.get_by_role("form", name="New prompt version")
        form.get_by_label("Name").fill("support")
        form.get_by_label("Prompt text").fill("Answer politely: {{question}}")
        form.get_by_label("Labels (comma separated)").fill("production")
        form.get_by_label("Commit message").fill("first")
        form.get_by_label("Config (JSON)").fill('{"model": "gpt-4o-mini"}')
        form.get_by_role("button", name="Save version").click()
        page.get_by_test_id("prompt-text").filter(has_text="Answer politely: {{question}}").wait_for()
        versions = page.get_by_role("table", name="Versions")
        assert "production" in versions.get_by_role("row").nth(1).inner_text()

        # a second version (chat), made in the form; the list and versions follow
        form = page.get_by_role("form", name="New prompt version")
        form.get_by_label("Type").select_option("chat")
        form.get_by_label("Messages (JSON)").fill(
            '[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "{{question}}"}]')
        form.get_by_label("Commit message").fill("chat version")
        form.get_by_role("button", name="Save version").click()
        page.get_by_role("region", name="Version 2").wait_for()
        assert "Answer briefly." in page.get_by_role("region", name="Version 2").inner_text()
        row2 = versions.get_by_role("row").nth(1)
        assert "v2" in row2.inner_text() and "latest" in row2.inner_text() and email in row2.inner_text()
        with live.api(key) as api:
            assert api.get("/api/v1/prompts/support", params={"label": "latest"}).json()["author"] == email

        # diff v1 -> v2
        diff_form = page.get_by_role("form", name="Compare versions")
        diff_form.get_by_label("From").select_option("1")
        diff_form.get_by_label("To").select_option("2")
        diff_form.get_by_role("button", name="Show diff").click()
        prompt_diff = page.get_by_label("Prompt diff")
        prompt_diff.wait_for()
        assert "-Answer politely: {{question}}" in prompt_diff.inner_text()
        assert "+Answer briefly." in prompt_diff.inner_text()
        assert '-  "model": "gpt-4o-mini"' in page.get_by_label("Config diff").inner_text()
        changes = page.get_by_role("table", name="Messages changed").get_by_role("row")
        assert [changes.nth(i).get_by_role("cell").nth(1).inner_text() for i in (1, 2)] == ["changed", "added"]
        assert "from=1" in page.url and "to=2" in page.url  # the view is a link

        # move production to v2
        move = page.get_by_role("form", name="Move a label")
        move.get_by_label("Label").fill("production")
        move.get_by_label("To version").select_option("2")
        move.get_by_role("button", name="Move label").click()
        page.get_by_role("table", name="Prompts").get_by_text("production: v2").wait_for()
        with live.api(key) as api:
            assert api.get("/api/v1/prompts/support").json()["version"] == 2
        page.get_by_text("Label history").click()
        history = page.get_by_role("table", name="Label history")
        history.get_by_role("row").nth(2).wait_for()
        assert [history.get_by_role("row").nth(i).inner_text().split("\t")[:3] for i in (1, 2)] == [
            ["production", "v1", "v2"], ["production", "–", "v1"]]
        assert email in history.get_by_role("row").nth(1).inner_text()
        # `latest` cannot be moved: the server's 400 shows inline
        move.get_by_label("Label").fill("latest")
        move.get_by_role("button", name="Move label").click()
        assert "latest" in move.get_by_role("alert").inner_text()
    finally:
        ctx.close()


def test_playground_refused_base_url_shows_an_inline_error_with_retry(browser, live):
    ctx, page, project_id, key, _ = _signed_in(browser, live, "member")
    try:
        with live.api(key) as api:
            assert api.post("/api/v1/prompts", json={"name": "greeter", "prompt": "Say hi to {{who}}",
                                                     "config": {"model": "gpt-4o-mini"}}).status_code == 201
        page.goto(f"/projects/{project_id}/prompts?prompt=greeter")
        playground = page.get_by_role("form", name="Playground")
        playground.get_by_label("{{who}}").fill("Ada")
        assert playground.get_by_label("Model").input_value() == "gpt-4o-mini"
        # this app's egress guard allows no loopback host: the server refuses before any call
        playground.get_by_label("Base URL").fill("http://127.0.0.1:9/v1")
        playground.get_by_role("button", name="Run").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        assert "base_url" in alert.inner_text() and alert.get_by_role("button", name="Retry").is_visible()
    finally:
        ctx.close()


def test_viewer_reads_prompts_but_gets_no_write_controls(browser, live):
    ctx, page, project_id, key, _ = _signed_in(browser, live, "viewer")
    try:
        with live.api(key) as api:
            for text in ("one {{x}}", "two {{x}}"):
                assert api.post("/api/v1/prompts", json={"name": "ro", "prompt": text}).status_code == 201
        page.goto(f"/projects/{project_id}/prompts?prompt=ro&v=1")
        page.get_by_test_id("prompt-text").filter(has_text="one {{x}}").wait_for()
        assert page.get_by_role("form", name="Compare versions").count() == 1  # reading a diff is fine
        for form in ("New prompt version", "Move a label", "Playground"):
            assert page.get_by_role("form", name=form).count() == 0
    finally:
        ctx.close()

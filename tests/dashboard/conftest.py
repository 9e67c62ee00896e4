"""The dashboard against ``evalforge up``'s app on a real loopback port over the session's real parts,
driven by Playwright in Debian's Chromium (one browser for the whole run)."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.conftest import unavailable

CHROMIUM = os.environ.get("EVALFORGE_CHROMIUM", "/usr/bin/chromium")
# What works on this machine kind: no sandbox as root, and no background traffic to Google's hosts.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
_offsets = itertools.count(1)


@dataclass
class LiveStack:
    url: str
    app: Any
    postgres_url: str
    projects: dict[str, tuple[str, str]] = field(default_factory=dict)

    def create_project(self, name: str | None = None) -> tuple[str, str]:
        """A new project and a full API key for it: (project_id, key)."""
        from tests.conftest import new_project_key

        name, project_id, secret = new_project_key(self.postgres_url, name)
        self.projects[name] = (project_id, secret)
        return project_id, secret

    def insert_spans(self, records: list[dict[str, Any]]) -> None:
        """Canonical records -> enrich -> offload -> the real sink (materialized views fill)."""
        from core.payloads import offload_payloads
        from core.span import empty_record
        from stream_processors.enrich import enrich
        from stream_processors.sink import ClickHouseSink

        services = self.app.state.services
        sink = ClickHouseSink(services.clickhouse, "test:dashboard")
        for rec in records:
            full = empty_record()
            full.update(rec)
            enrich(full)
            offload_payloads(full, services.blobs, services.settings.payload_offload_bytes)
            sink.add_span(full, 0, next(_offsets))
        sink.flush()

    def api(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def span(project_id: str, trace_id: str, span_id: str, parent: str, start: datetime, ms: float, **fields: Any) -> dict:
    rec = {"project_id": project_id, "trace_id": trace_id, "span_id": span_id, "parent_span_id": parent,
           "start_time": start, "end_time": start + timedelta(milliseconds=ms), "service_name": "dash-test",
           "status": "ok", "ingested_at": datetime.now(timezone.utc)}
    rec.update(fields)
    return rec


@pytest.fixture(scope="session")
def live(clickhouse, chdb_url, migrated_postgres, redis_url, s3_blob_url, service_root: Path) -> Iterator[LiveStack]:
    from launcher.cli import ALL_PARTS, _background, _routers
    from core.http import build_app
    from core.settings import Settings
    from tests.harness.live_server import LiveServer

    settings = Settings(data_dir=service_root / "dashboard", clickhouse_url=chdb_url, postgres_url=migrated_postgres,
                        redis_url=redis_url, blob_url=s3_blob_url, sink_batch_ms=100, payload_offload_bytes=4096)
    from evaluators.service import optimization_worker_task

    # This stack shares PostgreSQL with the session's in-process stack (tests/conftest.py), whose egress
    # settings let it reach the fake LLM servers on loopback. Optimisation jobs are claimed from
    # PostgreSQL by any worker on the database: a second worker here, refused loopback, would take
    # other tests' jobs and fail them. The other stack's worker runs this one's jobs.
    background = [task for task in _background("up") if task is not optimization_worker_task]
    app = build_app(settings, parts=ALL_PARTS, routers=_routers("up"), background=background, migrate=True)
    server = LiveServer(app).start()
    try:
        yield LiveStack(url=server.url, app=app, postgres_url=migrated_postgres)
    finally:
        server.stop()


@pytest.fixture(scope="package")  # Playwright's sync API holds an event loop in this thread: ended after tests/dashboard, so later asyncio.run() calls work
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable("Playwright", "pip install playwright (the test extra).", exc)
    if not Path(CHROMIUM).exists():
        unavailable("Chromium", "apt-get install -y chromium (scripts/bootstrap does it as root).",
                    FileNotFoundError(CHROMIUM))
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page_for(browser, live):
    """``page_for(key)``: a fresh browser context sending that API key (no session cookie)."""
    contexts = []

    def make(key: str | None = None):
        ctx = browser.new_context(base_url=live.url, viewport={"width": 1400, "height": 900},
                                  extra_http_headers={"Authorization": f"Bearer {key}"} if key else None)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.js_errors = errors  # type: ignore[attr-defined]
        return page

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture(scope="session")
def data(live):
    """One seeded project for every dashboard test (10,000-span trace included: seeded once)."""
    from tests.dashboard.seed import seed

    return seed(live)

"""The unmodified Langfuse JS SDK (Node), configured by LANGFUSE_BASE_URL and keys alone.

Its npm packages (pinned in ``langfuse_js/package.json``) are installed on first use into
``~/.cache/evalforge/langfuse-js-<hash>``, as the Kafka jars are; without Node / npm the test is
skipped locally and fails under CI=true.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import unavailable

APP_DIR = Path(__file__).resolve().parent / "langfuse_js"


@pytest.fixture(scope="module")
def langfuse_js() -> Path:
    """A directory holding app.mjs and its installed node_modules."""
    manifest = (APP_DIR / "package.json").read_bytes()
    home = Path.home() / ".cache" / "evalforge" / f"langfuse-js-{hashlib.sha256(manifest).hexdigest()[:12]}"
    try:
        if shutil.which("node") is None or shutil.which("npm") is None:
            raise RuntimeError("node and npm are not on PATH")
        if not (home / "node_modules" / "@langfuse" / "otel").is_dir():
            home.mkdir(parents=True, exist_ok=True)
            (home / "package.json").write_bytes(manifest)
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=home, check=True,
                           capture_output=True, text=True, timeout=600)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        unavailable("Langfuse JS SDK", "Needs Node >= 20 and npm with access to the npm registry.", exc)
    shutil.copy(APP_DIR / "app.mjs", home / "app.mjs")
    return home


def test_langfuse_js_sdk_trace_generation_and_score_land_in_the_keys_project(live_stack, langfuse_js):
    project_id, project_name, key = live_stack.create_key()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANGFUSE_BASE_URL": live_stack.url,
           "LANGFUSE_PUBLIC_KEY": f"pk-lf-{uuid.uuid4().hex[:8]}", "LANGFUSE_SECRET_KEY": key}
    done = subprocess.run(["node", "app.mjs"], cwd=langfuse_js, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout.strip().splitlines()[-1])
    assert ids["projectName"] == project_name  # the SDK's projects.get() answered for the key's project
    rows = live_stack.wait_rows(
        "SELECT span_id, parent_span_id, name, kind, model, input_tokens, output_tokens, session_id, user_id, tags, "
        "input, output FROM spans WHERE project_id = {p:String} AND trace_id = {t:String}",
        {"p": project_id, "t": ids["traceId"]}, 2)
    spans = {r[0]: r for r in rows}
    assert set(spans) == {ids["rootId"], ids["generationId"]}
    root, gen = spans[ids["rootId"]], spans[ids["generationId"]]
    assert gen[1] == ids["rootId"]
    assert (root[2], gen[2], gen[3], gen[4], gen[5], gen[6]) == ("js-agent", "js-llm", "llm", "gpt-4o-mini", 50, 10)
    for span in (root, gen):
        assert (span[7], span[8], span[9]) == ("js-session", "js-user", ["js"])
    assert json.loads(gen[10]) == [{"role": "user", "content": "Hello from JS"}]
    assert json.loads(gen[11]) == {"role": "assistant", "content": "Hi!"}
    assert (root[10], root[11]) == ("js question", "js answer")
    scores = live_stack.wait_rows(
        "SELECT name, span_id, value, comment FROM scores FINAL WHERE project_id = {p:String} AND trace_id = {t:String}",
        {"p": project_id, "t": ids["traceId"]}, 1)
    assert scores == [("js-score", ids["generationId"], 1.0, "from js")]

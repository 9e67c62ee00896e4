"""The unmodified Langfuse SDK's ``get_trace_url()`` leads to our trace page."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx

from tests.dropin.test_langfuse import ROOT

_PRINT_TRACE_URL = """
import sys
from langfuse import Langfuse
client = Langfuse(public_key=sys.argv[2], secret_key=sys.argv[3], base_url=sys.argv[1])
print(client.get_trace_url(trace_id=sys.argv[4]))
"""


def test_langfuse_get_trace_url_redirects_to_our_trace_page(live_stack):
    project_id, _, key = live_stack.create_key()
    trace_id = uuid.uuid4().hex
    done = subprocess.run([sys.executable, "-c", _PRINT_TRACE_URL, live_stack.url, f"pk-lf-{uuid.uuid4().hex[:8]}",
                           key, trace_id], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip().splitlines()[-1]
    assert url == f"{live_stack.url}/project/{project_id}/traces/{trace_id}"  # the project id is ours
    r = httpx.get(url)
    assert r.status_code == 307 and r.headers["location"] == f"/projects/{project_id}/traces/{trace_id}"
    page = httpx.get(url, follow_redirects=True)
    assert page.status_code == 200 and page.url.path == f"/projects/{project_id}/traces/{trace_id}"
    assert "text/html" in page.headers["content-type"]


def test_langfuse_paths_keep_their_query_and_never_leave_the_site(live_stack):
    r = httpx.get(f"{live_stack.url}/project/p1/traces/t1", params={"observation": "abc"})
    assert r.headers["location"] == "/projects/p1/traces/t1?observation=abc"
    r = httpx.get(f"{live_stack.url}/project//evil.example/x")
    assert r.status_code == 307 and r.headers["location"] == "/projects/evil.example/x"

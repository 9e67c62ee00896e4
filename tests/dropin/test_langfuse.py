"""The unmodified Langfuse Python SDK, pointed at EvalForge by base URL and keys alone."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_app(url: str, public_key: str, secret_key: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "tests.dropin.langfuse_app", url, public_key, secret_key],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_langfuse_sdk_trace_generation_and_scores_land_in_the_keys_project(live_stack):
    project_id, _, key = live_stack.create_key()
    ids = _run_app(live_stack.url, f"pk-lf-{uuid.uuid4().hex[:8]}", key)
    assert ids["auth_ok"] is True
    rows = live_stack.wait_rows(
        "SELECT span_id, parent_span_id, name, kind, model, input_tokens, output_tokens, cache_read_tokens, cost, "
        "cost_source, ttft_ms, session_id, user_id, tags, input, output, attributes FROM spans "
        "WHERE project_id = {p:String} AND trace_id = {t:String} ORDER BY start_time",
        {"p": project_id, "t": ids["trace_id"]}, 2)
    spans = {r[0]: r for r in rows}
    assert set(spans) == {ids["root_id"], ids["generation_id"]}
    root, gen = spans[ids["root_id"]], spans[ids["generation_id"]]
    assert gen[1] == ids["root_id"] and root[1] == ""
    assert (root[2], root[3], gen[2], gen[3]) == ("answer-ticket", "span", "draft-reply", "llm")
    assert gen[4] == "gpt-4o-mini"
    # Langfuse usage_details are disjoint: input 120 + cache read 30 = 150 prompt tokens
    assert (gen[5], gen[6], gen[7]) == (150, 25, 30)
    assert gen[8] == pytest.approx(0.0003) and gen[9] == "user"
    assert 100 <= gen[10] <= 1000  # completion_start_time 150 ms after the generation started
    for span in (root, gen):
        assert (span[11], span[12]) == ("sess-9", "user-42")
        assert sorted(span[13]) == ["beta", "checkout"]
        # the SDK JSON-encodes each metadata value; unwrapping it is the normaliser's business
        assert span[16]["metadata.tier"] in ("gold", '"gold"')
    assert json.loads(gen[14]) == [{"role": "user", "content": "Where is my order?"}]
    assert json.loads(gen[15]) == {"role": "assistant", "content": "It ships tomorrow."}
    assert json.loads(root[14]) == {"ticket": "Where is my order?"}
    assert json.loads(gen[16]["langfuse.observation.model.parameters"]) == {"temperature": 0.2, "max_tokens": 256}
    assert gen[16]["langfuse.trace.name"] == "support-ticket"

    scores = live_stack.wait_rows(
        "SELECT name, span_id, value, string_value, comment FROM scores FINAL "
        "WHERE project_id = {p:String} AND trace_id = {t:String} ORDER BY name",
        {"p": project_id, "t": ids["trace_id"]}, 2)
    assert scores == [("helpfulness", ids["generation_id"], 0.75, "", "clear answer"),
                      ("resolved", "", None, "yes", "")]

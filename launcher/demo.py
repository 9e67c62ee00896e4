"""``evalforge demo``: send a small, realistic set of traces to a running EvalForge."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import httpx

from core.auth import read_credentials

MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("anthropic", "claude-haiku-4-5")]
QUESTIONS = ["What is the capital of France?", "Summarise this ticket in one line.", "Write a haiku about latency.",
             "Which plan fits a team of 12?", "Translate 'good morning' to German."]


def _span(trace_id: str, parent: str, name: str, kind: str, start_ns: int, ms: float, **extra) -> dict:
    return {"trace_id": trace_id, "span_id": uuid.uuid4().hex[:16], "parent_span_id": parent, "name": name, "kind": kind,
            "start_time": start_ns, "end_time": start_ns + int(ms * 1e6), **extra}


def demo_spans(traces: int = 30, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    now = time.time_ns()
    spans = []
    for i in range(traces):
        trace_id = uuid.uuid4().hex
        start = now - rng.randint(1, 3600) * 10**9
        provider, model = rng.choice(MODELS)
        question = rng.choice(QUESTIONS)
        failed = rng.random() < 0.1
        root = _span(trace_id, "", "support-agent", "agent", start, 2500, session_id=f"session-{i % 6}",
                     user_id=f"user-{i % 9}", tags=["demo", rng.choice(["web", "mobile"])], input=question,
                     status="error" if failed else "ok")
        llm_ms = rng.uniform(300, 2000)
        llm = _span(trace_id, root["span_id"], f"chat {model}", "llm", start + 10**7, llm_ms, model=model, provider=provider,
                    input=question, output="" if failed else f"Here is my answer to: {question}",
                    usage={"input_tokens": rng.randint(200, 3000), "output_tokens": rng.randint(20, 600),
                           "cache_read_tokens": rng.choice([0, 0, 128])},
                    status="error" if failed else "ok",
                    attributes={"error.type": "RateLimitError"} if failed else {})
        tool = _span(trace_id, root["span_id"], "search_docs", "tool", start + 10**7 + int(llm_ms * 1e6), rng.uniform(20, 200),
                     input='{"query": "pricing"}', output='{"hits": 3}')
        root["end_time"] = tool["end_time"] + 5 * 10**6
        spans += [root, llm, tool]
    return spans


def run_demo(endpoint: str, api_key: str | None, data_dir: Path) -> int:
    if not api_key:
        cred = data_dir / "credentials"
        if not cred.exists():
            print(f"evalforge: error: no API key: pass --api-key or start 'evalforge up' with --data-dir {data_dir}")
            return 2
        api_key = read_credentials(cred)["EVALFORGE_API_KEY"]
    spans = demo_spans()
    r = httpx.post(f"{endpoint}/api/v1/spans", json={"spans": spans}, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    if r.status_code != 200:
        print(f"evalforge: error: {endpoint} answered {r.status_code}: {r.text[:300]}")
        return 1
    print(f"sent {r.json()['accepted']} spans in {len(spans) // 3} traces; see {endpoint}/api/v1/traces")
    return 0

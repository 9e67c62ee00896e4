"""Deterministic data for the dashboard tests, written through the real sink."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from tests.dashboard.conftest import LiveStack, span

XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
BIG_MARKER = "END-OF-THE-BIG-PAYLOAD-7f3a"


@dataclass
class Seeded:
    project_id: str
    key: str
    chat_trace: str
    big_trace: str
    xss_trace: str
    huge_trace: str
    huge_spans: int
    big_text: str
    anchor: datetime  # every seeded span starts within 5 minutes after it, all in one clock hour


def _hex(i: int, width: int) -> str:
    return format(i, f"0{width}x")


def seed(live: LiveStack) -> Seeded:
    pid, key = live.create_project()
    # 5 minutes past the previous clock hour: the seeded spans (3 minutes of them) share one hourly bucket
    now = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(minute=5, second=0, microsecond=0)
    recs = []
    base = int(pid[:6], 16) << 40  # ids unique to this project
    for t in range(12):
        tid = _hex(base + t, 32)
        root = _hex(base + t * 10 + 1, 16)
        model = "gpt-4o" if t % 3 == 0 else "claude-3-5-sonnet"
        start = now + timedelta(seconds=t * 7)
        common = {"user_id": f"user-{t % 3}", "session_id": f"sess-{t % 4}", "tags": ["beta"] if t % 2 else []}
        recs.append(span(pid, tid, root, "", start, 2500, name="chat-turn", kind="agent",
                         input=f"question {t}", output=f"answer {t}", **common))
        messages_in = [
            {"role": "system", "parts": [{"type": "text", "content": "You are a weather bot."}]},
            {"role": "user", "parts": [{"type": "text", "content": f"Weather in Paris? ({t})"}]},
        ]
        messages_out = [{"role": "assistant", "parts": [
            {"type": "tool_call", "id": f"call_{t}", "name": "get_weather", "arguments": {"city": "Paris"}}]}]
        recs.append(span(pid, tid, _hex(base + t * 10 + 2, 16), root, start + timedelta(milliseconds=10), 900,
                         name="llm-call", kind="llm", model=model, request_model=model,
                         provider="openai" if model.startswith("gpt") else "anthropic", input_tokens=1200 + t,
                         output_tokens=80 + t, ttft_ms=210.0, attributes={"metadata.region": "eu"},
                         input=json.dumps(messages_in), output=json.dumps(messages_out), **common))
        recs.append(span(pid, tid, _hex(base + t * 10 + 3, 16), root, start + timedelta(milliseconds=950), 300,
                         name="get_weather", kind="tool", input='{"city": "Paris"}', output='{"temp_c": 18}', **common))
        follow_in = messages_in + messages_out + [
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": f"call_{t}", "response": '{"temp_c": 18}'}]}]
        recs.append(span(pid, tid, _hex(base + t * 10 + 4, 16), root, start + timedelta(milliseconds=1300), 1100,
                         name="llm-call", kind="llm", model=model, request_model=model,
                         provider="openai" if model.startswith("gpt") else "anthropic", input_tokens=1400, output_tokens=40,
                         status="error" if t == 5 else "ok", status_message="rate limited" if t == 5 else "",
                         input=json.dumps(follow_in),
                         output=json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "It is 18 °C in Paris."}]}]),
                         **common))
    chat_trace = _hex(base, 32)
    # A payload above the offload threshold (4 KiB in these tests): stored in the blob store.
    big_trace = _hex(base + 100, 32)
    big_text = "".join(f"line {i}: " + "lorem ipsum " * 5 + "\n" for i in range(400)) + BIG_MARKER
    recs.append(span(pid, big_trace, _hex(base + 1001, 16), "", now + timedelta(seconds=100), 400, name="big-input",
                     kind="llm", model="gpt-4o-mini", input=big_text, output="ok"))
    xss_trace = _hex(base + 101, 32)
    recs.append(span(pid, xss_trace, _hex(base + 1002, 16), "", now + timedelta(seconds=101), 50, name=XSS,
                     kind="llm", model="gpt-4o-mini", input=XSS, output=json.dumps([{"role": "assistant", "content": XSS}]),
                     attributes={"metadata.note": XSS}))
    # 10,000 spans: a root, 99 agents, 100 children each.
    huge_trace = _hex(base + 102, 32)
    hroot = _hex(base + 5000, 16)
    t0 = now + timedelta(seconds=120)
    recs.append(span(pid, huge_trace, hroot, "", t0, 60_000, name="huge-root", kind="agent"))
    n = 1
    for a in range(99):
        aid = _hex(base + 6000 + a, 16)
        recs.append(span(pid, huge_trace, aid, hroot, t0 + timedelta(milliseconds=a * 600), 590, name=f"agent-{a}", kind="agent"))
        n += 1
        for c in range(100 if a < 98 else 100):
            if n >= 10_000:
                break
            recs.append(span(pid, huge_trace, _hex(base + 100_000 + a * 1000 + c, 16), aid,
                             t0 + timedelta(milliseconds=a * 600 + c * 5), 4, name=f"step-{a}-{c}", kind="tool"))
            n += 1
    live.insert_spans(recs)
    return Seeded(pid, key, chat_trace, big_trace, xss_trace, huge_trace, n, big_text, now)

"""SDK overhead: added latency per wrapped OpenAI call on the caller's thread.

Compares, in one run, evalforge.wrap against OpenLLMetry (``opentelemetry-instrumentation-openai``)
and OpenInference (``openinference-instrumentation-openai``) instrumenting the same ``openai.OpenAI``
client over the same in-process ``httpx2.MockTransport`` (openai's own HTTP library), so the network is
out of the picture and what remains is client + instrumentation work. Every tracer exports for real
(OTLP/HTTP to a receiver in a separate process) through its usual batch pipeline.

Each configuration runs in its own fresh process (instrumentors patch globally). Inside it, unwrapped
and instrumented calls alternate one by one (see ``run_config``), so drift on a shared machine hits both
sides; added latency = instrumented percentile - unwrapped percentile, in caller-thread CPU time
(primary: other processes' load does not count) and wall-clock time.

    .venv/bin/python bench/sdk_overhead.py [--calls 1500] [--rounds 3]

Prints its figures; not a timed test. Target: evalforge <= 0.5x the faster peer's added latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello in five words."}]

CHAT_JSON = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, how are you?"}, "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28,
              "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
}).encode()


def _sse_body() -> bytes:
    base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06"}
    frames = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    for word in "Hello there , how are you doing on this fine day today ?".split():
        frames.append({**base, "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]})
    frames.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    frames.append({**base, "choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 13, "total_tokens": 34}})
    return b"".join(f"data: {json.dumps(f)}\n\n".encode() for f in frames) + b"data: [DONE]\n\n"


SSE_BODY = _sse_body()


def make_client():
    import httpx2
    import openai

    def handler(request: "httpx2.Request") -> "httpx2.Response":
        if b'"stream":true' in request.content or b'"stream": true' in request.content:
            return httpx2.Response(200, content=SSE_BODY, headers={"content-type": "text/event-stream"})
        return httpx2.Response(200, content=CHAT_JSON, headers={"content-type": "application/json"})

    return openai.OpenAI(api_key="sk-bench", base_url="http://bench.invalid/v1", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def call_once(client, stream: bool) -> None:
    if stream:
        s = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
        for _ in s:
            pass
    else:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.3, max_tokens=64)


def timed(fn) -> tuple[float, float]:
    """(wall µs, caller-thread CPU µs) of one call. CPU time ignores time stolen by other processes."""
    t, c = time.perf_counter_ns(), time.thread_time_ns()
    fn()
    return (time.perf_counter_ns() - t) / 1000.0, (time.thread_time_ns() - c) / 1000.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_config(name: str, endpoint: str, calls: int) -> dict:
    """Inside a fresh process: unwrapped and instrumented calls interleaved one by one.

    Interleaving cancels the drift of a shared machine (sequential blocks disagreed by 10x between
    runs). The unwrapped side: for evalforge an unwrapped client; for the peers, whose patches are
    process-wide (and OpenLLMetry's ``uninstrument()`` does not remove them on openai 3.x), the same
    call under OTel's ``suppress_instrumentation`` key, which both honour at the top of their wrapper.
    That leaves the peers' wrapper-dispatch cost in *their* baseline: it only flatters the peers.
    """
    from opentelemetry import context as otel_context
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY

    plain = make_client()
    if name == "evalforge":
        sys.path.insert(0, str(ROOT / "sdk"))
        import evalforge

        evalforge.init(api_key="bench", endpoint=endpoint)
        traced = evalforge.wrap(make_client())
        suppress = False
        exported = lambda: evalforge.flush(10) and evalforge.stats()["exported"]  # noqa: E731
    else:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
        trace.set_tracer_provider(provider)
        if name == "openllmetry":
            from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        else:
            from openinference.instrumentation.openai import OpenAIInstrumentor
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        traced = plain
        suppress = True
        exported = lambda: provider.force_flush(10000)  # noqa: E731
    off_ctx = otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True)

    def baseline(stream: bool) -> tuple[float, float]:
        token = otel_context.attach(off_ctx) if suppress else None
        try:
            return timed(lambda: call_once(plain, stream))
        finally:
            if token is not None:
                otel_context.detach(token)

    result: dict = {}
    for stream in (False, True):
        for _ in range(300):  # warm-up
            baseline(stream)
            timed(lambda: call_once(traced, stream))
        base, inst = ([], []), ([], [])
        for i in range(calls):
            order = (0, 1) if i % 2 else (1, 0)  # alternate who goes first
            for side in order:
                w, c = baseline(stream) if side == 0 else timed(lambda: call_once(traced, stream))
                target = base if side == 0 else inst
                target[0].append(w)
                target[1].append(c)
        key = "stream" if stream else "json"
        result[key] = {
            f"{clock}_{side}_{q}": pct(values[i], qv)
            for i, clock in enumerate(("wall", "cpu"))
            for side, values in (("base", base), ("inst", inst))
            for q, qv in (("p50", 0.5), ("p99", 0.99))
        }
    result["exported"] = exported()
    return result


CONFIGS = ("evalforge", "openllmetry", "openinference")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1500, help="interleaved call pairs per configuration and mode")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin repetitions of every configuration")
    parser.add_argument("--_config")
    parser.add_argument("--_endpoint")
    args = parser.parse_args()
    if args._config:
        print(json.dumps(run_config(args._config, args._endpoint, args.calls)))
        return

    receiver = subprocess.Popen([sys.executable, str(ROOT / "tests/sdk/otlp_receiver.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    endpoint = receiver.stdout.readline().strip()
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    try:
        # Round-robin over fresh processes: a shared machine's speed drifts by 1.5x between minutes,
        # so each figure below is the median over rounds of per-process numbers.
        for _ in range(args.rounds):
            for name in CONFIGS:
                out = subprocess.run([sys.executable, __file__, "--_config", name, "--_endpoint", endpoint, "--calls", str(args.calls)],
                                     capture_output=True, text=True, check=True)
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        receiver.stdin.close()
        receiver.terminate()
    results = {name: {mode: {k: statistics.median(r[mode][k] for r in rs) for k in rs[0][mode]} for mode in ("json", "stream")}
               | {"exported": [r["exported"] for r in rs]} for name, rs in runs.items()}
    added_runs = {name: {mode: [r[mode]["cpu_inst_p50"] - r[mode]["cpu_base_p50"] for r in rs] for mode in ("json", "stream")} for name, rs in runs.items()}

    print(f"openai {__import__('openai').__version__}; {args.calls} interleaved call pairs per config and mode, "
          f"median of {args.rounds} rounds; microseconds per call")
    for clock, label in (("cpu", "caller-thread CPU time (primary: immune to other processes' load)"), ("wall", "wall-clock time")):
        print(f"\n== {label}")
        print(f"{'tracer':<14}{'mode':<8}{'base p50':>10}{'base p99':>10}{'inst p50':>10}{'inst p99':>10}{'added p50':>11}{'added p99':>11}")
        added = {}
        for name, res in results.items():
            for mode in ("json", "stream"):
                r = res[mode]
                a50 = r[f"{clock}_inst_p50"] - r[f"{clock}_base_p50"]
                a99 = r[f"{clock}_inst_p99"] - r[f"{clock}_base_p99"]
                added[(name, mode)] = (a50, a99)
                print(f"{name:<14}{mode:<8}{r[f'{clock}_base_p50']:>10.1f}{r[f'{clock}_base_p99']:>10.1f}"
                      f"{r[f'{clock}_inst_p50']:>10.1f}{r[f'{clock}_inst_p99']:>10.1f}{a50:>11.1f}{a99:>11.1f}")
        for mode in ("json", "stream"):
            peer50 = min(added[("openllmetry", mode)][0], added[("openinference", mode)][0])
            peer99 = min(added[("openllmetry", mode)][1], added[("openinference", mode)][1])
            ours = added[("evalforge", mode)]
            print(f"  {mode:<7} evalforge / faster peer: p50 {ours[0] / peer50:.2f}x, p99 {ours[1] / peer99:.2f}x  (target <= 0.5x)")
    print("\nper-round added CPU p50 (json / stream):")
    for name, modes in added_runs.items():
        print(f"  {name:<14}" + "  ".join(f"{a:7.1f}/{b:7.1f}" for a, b in zip(modes["json"], modes["stream"])))
    print("spans exported per round (evalforge: count; peers: force_flush ok):", {k: v["exported"] for k, v in results.items()})


if __name__ == "__main__":
    main()

"""Error classification: vectors, plus errors raised by the real openai / anthropic SDKs against a
local HTTP server that answers the way the providers do."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai
import pytest

from core.errors_class import CLASSES, classify_error


@pytest.mark.parametrize(("error_type", "message", "status", "expected"), [
    ("", "", None, ""),
    ("", "", 200, ""),
    ("openai.RateLimitError", "Rate limit reached for gpt-4o on tokens per min (TPM)", 429, "rate_limit"),
    ("anthropic.RateLimitError", "", None, "rate_limit"),
    ("google.api_core.exceptions.ResourceExhausted", "429 Resource has been exhausted", None, "rate_limit"),
    ("botocore.errorfactory.ThrottlingException", "Too many requests, please wait", None, "rate_limit"),
    ("openai.APITimeoutError", "Request timed out.", None, "timeout"),
    ("anthropic.APITimeoutError", "Request timed out or interrupted.", None, "timeout"),
    ("httpx.ReadTimeout", "", None, "timeout"),
    ("httpx.ConnectTimeout", "", None, "timeout"),
    ("TimeoutError", "", None, "timeout"),
    ("google.api_core.exceptions.DeadlineExceeded", "504 Deadline Exceeded", None, "timeout"),
    ("", "upstream request timeout", 504, "timeout"),
    ("openai.BadRequestError",
     "Error code: 400 - {'error': {'message': \"This model's maximum context length is 128000 tokens. However, "
     "your messages resulted in 130512 tokens.\", 'type': 'invalid_request_error', 'param': 'messages', "
     "'code': 'context_length_exceeded'}}", 400, "context_length"),
    ("anthropic.BadRequestError", "prompt is too long: 215000 tokens > 200000 maximum", 400, "context_length"),
    ("litellm.ContextWindowExceededError", "", None, "context_length"),
    ("botocore.errorfactory.ValidationException", "Input is too long for requested model.", None, "context_length"),
    ("google.api_core.exceptions.InvalidArgument",
     "400 The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", None,
     "context_length"),
    ("openai.BadRequestError",
     "Error code: 400 - {'error': {'message': \"The response was filtered due to the prompt triggering Azure "
     "OpenAI's content management policy.\", 'code': 'content_filter', 'status': 400}}", 400, "content_filter"),
    ("openai.ContentFilterFinishReasonError", "Could not parse response content as the request was rejected "
     "by the content filter", None, "content_filter"),
    ("", "Response blocked: finish_reason SAFETY", None, "content_filter"),
    ("openai.AuthenticationError", "Incorrect API key provided: sk-abc***", 401, "auth"),
    ("anthropic.PermissionDeniedError", "", 403, "auth"),
    ("", "invalid x-api-key", None, "auth"),
    ("anthropic.InternalServerError",
     "Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error', 'message': 'Overloaded'}}",
     529, "server"),
    ("", "overloaded_error", None, "server"),
    ("openai.InternalServerError", "The server had an error while processing your request.", 500, "server"),
    ("openai.APIConnectionError", "Connection error.", None, "server"),
    ("httpx.ConnectError", "[Errno 111] Connection refused", None, "server"),
    ("", "", 503, "server"),
    ("503", "", None, "server"),  # OTel error.type may be the status code
    ("openai.NotFoundError", "The model `gpt-9` does not exist or you do not have access to it.", 404, "other"),
    ("ValueError", "bad value", None, "other"),
    ("_OTHER", "", None, "other"),
    ("", "Error code: 429 - {'error': {'message': 'slow down'}}", None, "rate_limit"),  # status read from message
])
def test_classification_vectors(error_type: str, message: str, status: int | None, expected: str) -> None:
    assert classify_error(error_type, message, status) == expected


# -- real SDK errors ---------------------------------------------------------------------------------

OPENAI_ERRORS = {
    "rate": (429, {"error": {"message": "Rate limit reached for gpt-4o in organization org-x on requests per "
                                        "min (RPM): Limit 3, Used 3, Requested 1.",
                             "type": "requests", "param": None, "code": "rate_limit_exceeded"}}),
    "context": (400, {"error": {"message": "This model's maximum context length is 128000 tokens. However, your "
                                           "messages resulted in 200000 tokens. Please reduce the length of the "
                                           "messages.",
                                "type": "invalid_request_error", "param": "messages",
                                "code": "context_length_exceeded"}}),
    "filter": (400, {"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's "
                                          "content management policy.",
                               "type": None, "param": "prompt", "code": "content_filter", "status": 400}}),
    "auth": (401, {"error": {"message": "Incorrect API key provided: sk-test. You can find your API key at "
                                        "https://platform.openai.com/account/api-keys.",
                             "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}),
    "server": (500, {"error": {"message": "The server had an error while processing your request. Sorry about "
                                          "that!", "type": "server_error", "param": None, "code": None}}),
}
ANTHROPIC_ERRORS = {
    "overloaded": (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    "rate": (429, {"type": "error", "error": {"type": "rate_limit_error",
                                              "message": "Number of request tokens has exceeded your per-minute "
                                                         "rate limit"}}),
    "context": (400, {"type": "error", "error": {"type": "invalid_request_error",
                                                 "message": "prompt is too long: 210000 tokens > 200000 maximum"}}),
    "auth": (401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
}


class _ProviderHandler(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions and /v1/messages with the error named by the request's model."""

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        scenario = body["model"]
        if scenario == "slow":
            time.sleep(1.5)
            status, payload = 200, {}
        elif self.path.endswith("/messages"):
            status, payload = ANTHROPIC_ERRORS[scenario]
        else:
            status, payload = OPENAI_ERRORS[scenario]
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout scenario)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ProviderHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _classify(exc: Exception) -> str:
    # What an instrumentation records: error.type = qualified class name, status message = str(exc).
    cls = type(exc)
    return classify_error(f"{cls.__module__}.{cls.__qualname__}", str(exc), getattr(exc, "status_code", None))


@pytest.mark.parametrize(("scenario", "expected"), [
    ("rate", "rate_limit"), ("context", "context_length"), ("filter", "content_filter"), ("auth", "auth"),
    ("server", "server"), ("slow", "timeout"),
])
def test_real_openai_sdk_errors(provider_url: str, scenario: str, expected: str) -> None:
    client = openai.OpenAI(base_url=f"{provider_url}/v1", api_key="sk-test", max_retries=0, timeout=0.5)
    with pytest.raises(openai.OpenAIError) as info:
        client.chat.completions.create(model=scenario, messages=[{"role": "user", "content": "hi"}])
    assert _classify(info.value) == expected


@pytest.mark.parametrize(("scenario", "expected"), [
    ("overloaded", "server"), ("rate", "rate_limit"), ("context", "context_length"), ("auth", "auth"),
    ("slow", "timeout"),
])
def test_real_anthropic_sdk_errors(provider_url: str, scenario: str, expected: str) -> None:
    client = anthropic.Anthropic(base_url=provider_url, api_key="sk-ant-test", max_retries=0, timeout=0.5)
    with pytest.raises(anthropic.AnthropicError) as info:
        client.messages.create(model=scenario, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert _classify(info.value) == expected


def test_result_is_always_a_known_class() -> None:
    for args in [("X", "", None), ("", "weird", None), ("", "", 418), ("", "", 599)]:
        assert classify_error(*args) in CLASSES


def test_an_error_span_always_gets_a_class() -> None:
    from datetime import datetime, timezone

    from core.span import empty_record
    from stream_processors.enrich import enrich

    span = empty_record()
    now = time.time()
    span.update(start_time=datetime.fromtimestamp(now - 1, timezone.utc), end_time=datetime.fromtimestamp(now, timezone.utc),
                status="error")  # no type, no message, no HTTP status
    assert enrich(span)["error_class"] == "other"
    span.update(status="ok", error_class="")
    assert enrich(span)["error_class"] == ""

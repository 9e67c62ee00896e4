"""Model calls for judges, criteria detection and test generation, through the openai / anthropic SDKs.

- ``LLMSettings``: provider, model, base URL (any OpenAI-compatible server works), retries, timeout.
- ``LLMClient.chat`` returns an ``LLMCall``: the reply text plus usage and timing, in the token
  convention of ``core.span`` so the call can be recorded as a span (``LLMCall.to_span_record``).
- Provider 429 / 408 / 409 / 5xx and connection errors are retried by the SDK itself with exponential
  backoff (honouring Retry-After), at most ``max_retries`` times; what still fails becomes a
  ``JudgeError`` — nothing is swallowed.
- ``JudgeGuard``: per-project rate limit (a limiter callable) and spend cap, checked before each call.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from core.egress import (
    EGRESS_REFUSED,
    EgressRefused,
    check_url,
    guarded_sdk_http_client,
)

T = TypeVar("T")
ErrorKind = Literal["provider_error", "malformed_output", "rate_limited", "budget_exceeded"]


class JudgeError(Exception):
    """An LLM-assisted evaluation failed; the worker records it (and may retry when ``retryable``).

    ``calls`` are the model calls made before failing: they cost money and should be recorded too.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        calls: list[LLMCall] | None = None,
        status_code: int | None = None,
        raw_output: str | None = None,
        retry_after: float | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.calls = calls or []
        self.status_code = status_code
        self.raw_output = raw_output
        self.retry_after = retry_after  # seconds, when the limiter said how long to wait
        self.transient = transient  # a connection failure or timeout (no HTTP status)

    @property
    def retryable(self) -> bool:
        """Worth retrying later: transient provider failures and our own rate limit."""
        if self.kind == "rate_limited":
            return True
        if self.kind == "provider_error":
            if self.status_code is None:
                return self.transient
            return self.status_code in (408, 409, 429) or self.status_code >= 500
        return False


def check_base_url(base_url: str | None, egress: Any) -> None:
    """Model calls made by the server for a project (judge rules, assisted criteria and datasets) go to
    the provider's own endpoint or through the egress guard (``core.egress``): a ``base_url`` whose host
    is loopback, private, link-local... is refused unless the operator allowed it in
    EVALFORGE_EGRESS_ALLOWED_HOSTS — otherwise any project user could make the server send requests
    anywhere on its network (SSRF). ``egress``: the settings the guard reads. ValueError names ``base_url``."""
    if not base_url:
        return
    try:
        check_url(base_url, egress)
    except EgressRefused as exc:
        raise ValueError(f"base_url: {exc}") from None


def server_key_for(base_url: str | None, server_key: str | None) -> str | None:
    """The server's model key (EVALFORGE_JUDGE_API_KEY) for a call made on a project's behalf, or None.

    The key goes only to the provider's own endpoint (no ``base_url``: the SDK's default, or the
    operator's OPENAI_BASE_URL / ANTHROPIC_BASE_URL). A ``base_url`` is project users' text — the
    egress guard lets any public host through, so a member could point it at a host they control
    and read the key from the request. Every site that spends the server's key asks here."""
    return (server_key or None) if not base_url else None


def judge_deps_for(config: Any, deps: dict[str, Any]) -> dict[str, Any]:
    """``deps`` for an ``llm_judge`` built from a project's ``config``: the server's ``api_key`` kept only
    when the config names no ``base_url`` (see ``server_key_for``). A config that is not a mapping
    (unvalidated text) gets no key: fail closed."""
    if "api_key" not in deps:
        return deps
    base_url = config.get("base_url") if isinstance(config, dict) else "unknown"
    return {**deps, "api_key": server_key_for(base_url, deps["api_key"])}


class LLMSettings(BaseModel):
    """How to reach a model. Stored in eval-rule config, which project users write, so it holds no
    secret and names none: the key comes from the runtime (``LLMClient(api_key=...)``). Only when
    ``base_url`` is unset (the provider's own endpoint) may the SDK fall back to its environment key
    (OPENAI_API_KEY / ANTHROPIC_API_KEY); otherwise a rule pointing at any URL could have the
    server's key sent there."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["openai", "anthropic"] = "openai"
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    # None: 0 for OpenAI-compatible servers (reproducible verdicts); not sent to Anthropic, whose
    # current SDK and models no longer take it (a set value still goes through, as extra body).
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, gt=0)
    # Some OpenAI models only accept max_completion_tokens; most compatible servers want max_tokens.
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    json_mode: bool = True  # OpenAI response_format json_object (ignored for Anthropic)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=10)


@dataclass
class LLMCall:
    """One completed model call: what was sent, what came back, usage (core.span convention), timing."""

    provider: str
    request_model: str
    model: str
    messages: list[dict[str, str]]
    output: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    reasoning_tokens: int
    start_time: datetime
    end_time: datetime
    cost: float | None = None  # set by JudgeGuard when it has a cost function

    @property
    def duration_ms(self) -> float:
        return (self.end_time - self.start_time).total_seconds() * 1000

    def to_span_record(
        self,
        project_id: str,
        *,
        trace_id: str | None = None,
        parent_span_id: str = "",
        name: str = "evaluator.judge",
        attributes: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A ``core.span`` record for this call (kind ``evaluator``), ready for the spans pipeline.

        By default it gets its own trace, so judge spend never inflates the evaluated trace's cost;
        pass ``attributes`` (e.g. the evaluated trace/span ids) to link them. Cost is left for the
        enrich step unless the guard computed it.
        """
        import orjson

        from core.span import empty_record

        rec = empty_record()
        rec.update(
            project_id=project_id,
            trace_id=trace_id or secrets.token_hex(16),
            span_id=secrets.token_hex(8),
            parent_span_id=parent_span_id,
            name=name,
            kind="evaluator",
            status="ok",
            operation="chat",
            provider=self.provider,
            request_model=self.request_model,
            model=self.model,
            start_time=self.start_time,
            end_time=self.end_time,
            duration_ms=self.duration_ms,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_creation_tokens=self.cache_creation_tokens,
            reasoning_tokens=self.reasoning_tokens,
            total_tokens=self.input_tokens + self.output_tokens,
            cost=self.cost,
            cost_source="computed" if self.cost is not None else "",
            input=orjson.dumps(self.messages).decode(),
            output=self.output,
            attributes=dict(attributes or {}),
        )
        return rec


class LLMClient:
    """A thin, synchronous wrapper over one provider SDK client (created once, reused).

    Every call goes through the egress guard: ``egress`` is the settings it reads (default: from the
    environment), ``purpose`` labels its refusal counter.
    """

    def __init__(self, settings: LLMSettings, api_key: str | None = None, *, egress: Any = None,
                 purpose: str = "llm_judge") -> None:
        self.settings = settings
        if egress is None:
            from core.settings import load_settings

            egress = load_settings()
        self._egress = egress
        self._purpose = purpose
        # Keyless OpenAI-compatible servers (vLLM, Ollama) still need a non-empty key for the SDK.
        self._api_key = api_key or (None if settings.base_url is None else "EMPTY")
        self._client: Any = None
        self._lock = threading.Lock()

    def _sdk(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    s = self.settings
                    http_client = guarded_sdk_http_client(self._egress, purpose=self._purpose, timeout=s.timeout_s)
                    kwargs: dict[str, Any] = {"max_retries": s.max_retries, "timeout": s.timeout_s,
                                              "http_client": http_client}
                    if s.base_url:
                        kwargs["base_url"] = s.base_url
                    if self._api_key:
                        kwargs["api_key"] = self._api_key
                    try:
                        if s.provider == "openai":
                            import openai

                            self._client = openai.OpenAI(**kwargs)
                        else:
                            import anthropic

                            self._client = anthropic.Anthropic(**kwargs)
                    except Exception as exc:  # e.g. no API key configured
                        raise JudgeError("provider_error", f"cannot create {s.provider} client: {exc}") from exc
        return self._client

    def chat(self, system: str, messages: list[dict[str, str]]) -> LLMCall:
        """Send a system prompt + user/assistant messages; return the reply with usage. Raises JudgeError."""
        s = self.settings
        if s.base_url:
            # Checked here as well as in the transport: the SDKs would take a refusal for a connection
            # error and retry it. A refusal is final (the rule's URL has to change).
            try:
                check_url(s.base_url, self._egress)
            except EgressRefused as exc:
                EGRESS_REFUSED.labels(self._purpose, exc.reason).inc()
                raise JudgeError("provider_error", f"base_url: {exc}") from None
        client = self._sdk()
        start = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        try:
            if s.provider == "openai":
                call = self._openai(client, system, messages)
            else:
                call = self._anthropic(client, system, messages)
        except JudgeError:
            raise
        except Exception as exc:  # SDK errors after its own retries: surface them typed
            status = getattr(exc, "status_code", None)
            # Both SDKs raise APIConnectionError (and its subclass APITimeoutError) for network failures.
            transient = any(c.__name__ == "APIConnectionError" for c in type(exc).__mro__)
            raise JudgeError(
                "provider_error", f"{s.provider} {type(exc).__name__}: {exc}", status_code=status, transient=transient
            ) from exc
        # perf_counter for the duration: wall-clock steps must not produce negative latencies.
        call.start_time = start
        call.end_time = start + timedelta(seconds=time.perf_counter() - t0)
        return call

    def _openai(self, client: Any, system: str, messages: list[dict[str, str]]) -> LLMCall:
        s = self.settings
        full = [{"role": "system", "content": system}, *messages]
        temperature = 0.0 if s.temperature is None else s.temperature
        kwargs: dict[str, Any] = {"model": s.model, "messages": full, "temperature": temperature}
        kwargs[s.max_tokens_param] = s.max_tokens
        if s.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        resp = client.chat.completions.create(**kwargs)
        if not resp.choices:
            raise JudgeError("provider_error", "openai response has no choices", status_code=200)
        usage = resp.usage
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None) or 0
        reasoning = getattr(getattr(usage, "completion_tokens_details", None), "reasoning_tokens", None) or 0
        now = datetime.now(timezone.utc)
        return LLMCall(
            provider="openai",
            request_model=s.model,
            model=resp.model or s.model,
            messages=full,
            output=resp.choices[0].message.content or "",
            input_tokens=(usage.prompt_tokens or 0) if usage else 0,
            output_tokens=(usage.completion_tokens or 0) if usage else 0,
            cache_read_tokens=cached,
            cache_creation_tokens=0,
            reasoning_tokens=reasoning,
            start_time=now,
            end_time=now,
        )

    def _anthropic(self, client: Any, system: str, messages: list[dict[str, str]]) -> LLMCall:
        s = self.settings
        extra = {"temperature": s.temperature} if s.temperature is not None else None
        resp = client.messages.create(
            model=s.model, system=system, messages=messages, max_tokens=s.max_tokens, extra_body=extra
        )
        text = "".join(getattr(b, "text", "") for b in resp.content if getattr(b, "type", "") == "text")
        u = resp.usage
        cache_read = getattr(u, "cache_read_input_tokens", None) or 0
        cache_creation = getattr(u, "cache_creation_input_tokens", None) or 0
        now = datetime.now(timezone.utc)
        return LLMCall(
            provider="anthropic",
            request_model=s.model,
            model=resp.model or s.model,
            messages=[{"role": "system", "content": system}, *messages],
            output=text,
            # core.span convention: input_tokens includes cache reads and writes (Anthropic's excludes them).
            input_tokens=(u.input_tokens or 0) + cache_read + cache_creation,
            output_tokens=u.output_tokens or 0,
            cache_read_tokens=cache_read,
            cache_creation_tokens=cache_creation,
            reasoning_tokens=0,
            start_time=now,
            end_time=now,
        )


class SpendLedger(Protocol):
    """Where judge spend is accumulated per project (the service backs it with Redis)."""

    def spent(self, project_id: str) -> float: ...

    def add(self, project_id: str, usd: float) -> None: ...


@dataclass
class InMemorySpendLedger:
    """Process-local ledger: fine for one worker and for tests."""

    totals: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def spent(self, project_id: str) -> float:
        return self.totals.get(project_id, 0.0)

    def add(self, project_id: str, usd: float) -> None:
        with self._lock:
            self.totals[project_id] = self.totals.get(project_id, 0.0) + usd


def per_token_cost(input_per_mtok: float, output_per_mtok: float) -> Callable[[LLMCall], float]:
    """A cost function from USD prices per million input / output tokens."""

    def cost(call: LLMCall) -> float:
        return (call.input_tokens * input_per_mtok + call.output_tokens * output_per_mtok) / 1_000_000

    return cost


@dataclass
class JudgeGuard:
    """Per-project rate limit and spend cap for LLM-assisted evaluation.

    - ``limiter(project_id) -> bool | (bool, retry_after_s)``: False means "over the rate limit now"
      (e.g. a Redis token bucket; evaluation runs in a worker thread, so an async limiter such as
      ``core.ratelimit.RateLimiter.allow`` is bridged with ``asyncio.run_coroutine_threadsafe``).
    - ``max_spend_usd``: a number, or ``project_id -> number | None``; checked before each call against
      ``ledger.spent(project_id)`` (so one call may overshoot it by its own cost).
    - ``cost_fn(call) -> USD | None``: prices a finished call; it is added to the ledger and to ``call.cost``.
    """

    limiter: Callable[[str], bool | tuple[bool, float]] | None = None
    max_spend_usd: float | Callable[[str], float | None] | None = None
    cost_fn: Callable[[LLMCall], float | None] | None = None
    ledger: SpendLedger = field(default_factory=InMemorySpendLedger)

    def __post_init__(self) -> None:
        if self.max_spend_usd is not None and self.cost_fn is None:
            raise ValueError("max_spend_usd: a spend cap needs cost_fn to price judge calls")

    def before_call(self, project_id: str) -> None:
        """Raise JudgeError(rate_limited | budget_exceeded) if this project may not call now."""
        if self.limiter is not None:
            verdict = self.limiter(project_id)
            allowed, retry_after = verdict if isinstance(verdict, tuple) else (verdict, None)
            if not allowed:
                raise JudgeError(
                    "rate_limited", f"project {project_id!r} is over its judge rate limit", retry_after=retry_after
                )
        cap = self.max_spend_usd(project_id) if callable(self.max_spend_usd) else self.max_spend_usd
        if cap is not None:
            spent = self.ledger.spent(project_id)
            if spent >= cap:
                raise JudgeError("budget_exceeded", f"project {project_id!r} spent ${spent:.4f} of its ${cap:g} judge budget")

    def after_call(self, project_id: str, call: LLMCall) -> None:
        """Price the call and book it against the project's spend."""
        if self.cost_fn is not None:
            call.cost = self.cost_fn(call)
            if call.cost:
                self.ledger.add(project_id, call.cost)

    def chat(self, client: LLMClient, project_id: str, system: str, messages: list[dict[str, str]]) -> LLMCall:
        """``client.chat`` wrapped in the limit / budget checks."""
        self.before_call(project_id)
        call = client.chat(system, messages)
        self.after_call(project_id, call)
        return call


def chat_parsed(
    client: LLMClient,
    guard: JudgeGuard,
    project_id: str,
    system: str,
    messages: list[dict[str, str]],
    parse: Callable[[str], T],
    format_hint: str,
) -> tuple[T, list[LLMCall]]:
    """Call the model and ``parse`` its reply; on ValueError ask once more, quoting the error.

    Returns (parsed, calls). A second unusable reply raises JudgeError(malformed_output); every
    JudgeError carries the calls already made, so their cost is never lost.
    """
    first = guard.chat(client, project_id, system, messages)
    calls = [first]
    try:
        return parse(first.output), calls
    except ValueError as exc:
        retry = [
            *messages,
            {"role": "assistant", "content": first.output},
            {"role": "user", "content": f"Your reply could not be used: {exc}. Reply again with only {format_hint}."},
        ]
    try:
        second = guard.chat(client, project_id, system, retry)
    except JudgeError as err:
        err.calls = calls + err.calls
        raise
    calls.append(second)
    try:
        return parse(second.output), calls
    except ValueError as exc:
        raise JudgeError(
            "malformed_output", f"reply unusable after one retry: {exc}", calls=calls, raw_output=second.output
        ) from None

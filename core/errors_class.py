"""Classify a span's error into the small set dashboards and alerts group by.

Classes: rate_limit, timeout, content_filter, context_length, auth, server, other ('' = no error).
Evidence, strongest first: a specific exception class name (openai.RateLimitError,
anthropic.APITimeoutError, httpx.ReadTimeout, botocore's ThrottlingException ...), then the
message text (provider error codes such as context_length_exceeded or overloaded_error), then the
HTTP status (given, or read from the SDKs' "Error code: 429 - ..." message prefix).
"""

from __future__ import annotations

import re

RATE_LIMIT = "rate_limit"
TIMEOUT = "timeout"
CONTENT_FILTER = "content_filter"
CONTEXT_LENGTH = "context_length"
AUTH = "auth"
SERVER = "server"
OTHER = "other"
CLASSES = (RATE_LIMIT, TIMEOUT, CONTENT_FILTER, CONTEXT_LENGTH, AUTH, SERVER, OTHER)

# Fragments of exception class names (lower-cased, last dotted part). Checked in this order:
# timeouts first, since e.g. openai.APITimeoutError subclasses APIConnectionError.
_TYPE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (TIMEOUT, ("timeout", "deadlineexceeded", "timedout")),
    (CONTEXT_LENGTH, ("contextwindow", "contextlength", "prompttoolong")),
    (CONTENT_FILTER, ("contentfilter", "contentpolicy", "safetyerror", "blockedprompt")),
    (RATE_LIMIT, ("ratelimit", "toomanyrequests", "throttl", "resourceexhausted", "quotaexceeded")),
    (AUTH, ("authentication", "permissiondenied", "unauthenticated", "unauthorized", "accessdenied",
            "forbidden", "invalidapikey")),
    (SERVER, ("internalserver", "serviceunavailable", "overloaded", "servererror", "apiconnection",
              "connecterror", "connection", "serverdisconnected", "badgateway", "remoteprotocol",
              "modelnotready", "unavailable")),
)

# Message patterns, most specific class first: a 400 BadRequestError says which 400 it is only here.
# Message patterns, most specific first: a 400 BadRequestError says which 400 it is only here.
# Rate limits come first because their messages also talk about tokens and limits.
_MESSAGE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (RATE_LIMIT, re.compile(
        r"rate[_ ]?limit|too many requests|resource[_ ]?exhausted|throttl|insufficient_quota"
        r"|exceeded your current quota|quota exceeded|tokens per min|requests per min|\btpm\b|\brpm\b")),
    (CONTEXT_LENGTH, re.compile(
        r"context_length_exceeded|maximum context length|context[ _]window|context length"
        r"|prompt is too long|input is too long|too many (?:input )?tokens|string_above_max_length"
        r"|exceed\w* (?:the )?(?:max\w*|model\W?s?)[^.]{0,30}(?:length|limit|tokens)"
        r"|request_too_large|reduce the length of the messages")),
    (CONTENT_FILTER, re.compile(
        r"content[_ ]?filter|content[_ ]?policy|content management policy|responsibleaipolicy"
        r"|prohibited[_ ]content|\bflagged\b|finish_?reason\W{1,4}safety|blocked[^.]{0,40}safety"
        r"|safety[^.]{0,40}block|output blocked|moderation")),
    (TIMEOUT, re.compile(r"timed? ?out|timeout|deadline[_ ]exceeded")),
    (AUTH, re.compile(
        r"invalid[_ ](?:x-)?api[-_ ]?key|incorrect api key|authentication|unauthori[sz]ed|unauthenticated"
        r"|permission[_ ]denied|permission_error|access ?denied|forbidden|api key not valid")),
    (SERVER, re.compile(
        r"overloaded|internal server error|internal error|server[_ ]error|service unavailable"
        r"|bad gateway|\bapi_error\b|connection (?:error|reset|refused|aborted)|server disconnected"
        r"|upstream connect error|\bunavailable\b|temporarily unable")),
)

_ERROR_CODE = re.compile(r"error code:? (\d{3})|status(?: code)?[:= ]+(\d{3})")


def _from_status(status: int) -> str | None:
    if status == 429:
        return RATE_LIMIT
    if status in (408, 504, 524, 598):
        return TIMEOUT
    if status in (401, 403, 407):
        return AUTH
    if status == 413:
        return CONTEXT_LENGTH
    if status >= 500:  # includes Anthropic's 529 overloaded
        return SERVER
    return None


def _from_type(error_type: str) -> str | None:
    leaf = error_type.rsplit(".", 1)[-1].lower().replace("_", "")
    if leaf in ("timeout", "timeouterror"):  # socket.timeout, builtins/asyncio TimeoutError
        return TIMEOUT
    for cls, fragments in _TYPE_RULES:
        if any(f in leaf for f in fragments):
            return cls
    return None


def classify_error(error_type: str, status_message: str, http_status: int | None = None) -> str:
    """Classify an error from its exception type, status message and HTTP status.

    Returns one of ``CLASSES``, or '' when nothing says an error happened.
    """
    error_type = (error_type or "").strip()
    message = (status_message or "").strip().lower()
    # OTel's error.type may be a status code ("429") or the catch-all "_OTHER".
    if error_type.isdigit():
        http_status = http_status or int(error_type)
        error_type = ""
    if not error_type and not message and (http_status is None or http_status < 400):
        return ""
    if error_type:
        found = _from_type(error_type)
        if found:
            return found
    if message:
        for cls, pattern in _MESSAGE_RULES:
            if pattern.search(message):
                return cls
        if http_status is None:
            m = _ERROR_CODE.search(message)
            if m:
                http_status = int(m.group(1) or m.group(2))
    if http_status is not None:
        found = _from_status(http_status)
        if found:
            return found
    return OTHER

"""Slack delivery: alert messages (built in ``messages``) POSTed to incoming webhooks, with retries.

Retried: network errors, 408, 429 (after ``Retry-After`` when given), 5xx — with capped exponential
backoff and jitter, at most ``max_attempts`` tries and never past ``deadline_s`` (kept below the outbox
lease, so another replica does not reclaim a message still being retried). Other 4xx (Slack's
``invalid_payload``, ``channel_not_found``, ``channel_is_archived``…) are permanent: retrying cannot help.
The webhook URL is never logged; errors name the rule, not the URL. Every POST goes through the egress
guard (``core.egress``): a webhook whose host resolves to a loopback / private / link-local address is
refused (and counted) before any connection is made, unless the operator allowed it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from prometheus_client import Counter

from core.egress import EgressRefused, guarded_client
from core.settings import load_settings

from .rules import redact_webhook_url

NOTIFICATIONS = Counter("evalforge_alert_notifications", "Alert messages by kind and outcome",
                        ["kind", "outcome"])  # outcome: sent | failed | no_webhook | rule_gone | muted
DELIVERY_RETRIES = Counter("evalforge_alert_delivery_retries", "Webhook POSTs retried", ["reason"])

_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class DeliverySettings:
    """How hard to try one webhook message."""

    max_attempts: int = 5
    timeout_s: float = 10.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 60.0
    deadline_s: float = 120.0


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    attempts: int
    status: int | None = None
    error: str = ""


class SlackNotifier:
    """POSTs JSON payloads to incoming webhooks through the egress guard.

    ``egress``: the settings whose ``EVALFORGE_EGRESS_ALLOWED_HOSTS`` the guard honours (default: from
    the environment). Pass ``client`` to share an ``httpx.Client`` — it must come from
    ``core.egress.guarded_client``.
    """

    def __init__(self, settings: DeliverySettings | None = None, client: httpx.Client | None = None, *,
                 egress: Any = None) -> None:
        self.settings = settings or DeliverySettings()
        self._client = client or guarded_client(egress if egress is not None else load_settings(),
                                                purpose="slack_webhook", timeout=self.settings.timeout_s)
        self._owns_client = client is None

    def close(self) -> None:
        """Close the HTTP client if this notifier created it."""
        if self._owns_client:
            self._client.close()

    def deliver(self, url: str, payload: dict[str, Any]) -> DeliveryResult:
        """Send ``payload``; retry what is worth retrying; never raises for delivery problems."""
        s = self.settings
        started = time.monotonic()
        status: int | None = None
        error = ""
        for attempt in range(1, s.max_attempts + 1):
            wait = _backoff(attempt, s)
            try:
                response = self._client.post(url, json=payload, timeout=s.timeout_s)
                status = response.status_code
                if response.is_success:
                    return DeliveryResult(True, attempt, status)
                error = f"HTTP {status}: {response.text[:200]}"
                if status not in _RETRYABLE_STATUS:
                    return DeliveryResult(False, attempt, status, error)
                retry_after = _retry_after(response.headers.get("retry-after"))
                if retry_after is not None:
                    wait = min(retry_after, s.max_retry_after_s)
                reason = str(status)
            except EgressRefused as exc:  # permanent: the host's addresses will not become allowed by retrying
                return DeliveryResult(False, attempt, None, f"webhook refused by the egress guard: {exc}")
            except httpx.TransportError as exc:
                # the URL is the secret: keep it out of errors that get logged and stored
                status, reason = None, "network"
                error = f"{type(exc).__name__}: {exc}".replace(url, redact_webhook_url(url) or "")
            if attempt == s.max_attempts or time.monotonic() - started + wait > s.deadline_s:
                break
            DELIVERY_RETRIES.labels(reason).inc()
            time.sleep(wait)
        return DeliveryResult(False, attempt, status, error)


def _backoff(attempt: int, s: DeliverySettings) -> float:
    # jitter spreads replicas' retries so they do not hit a recovering endpoint in lockstep
    return min(s.backoff_max_s, s.backoff_base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())

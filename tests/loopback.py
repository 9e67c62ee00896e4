"""Egress settings for tests whose fake outside services (Slack, LLM providers) listen on 127.0.0.1:
the egress guard refuses loopback unless the operator allows it, as these settings do."""

from core.settings import Settings

LOOPBACK_EGRESS = Settings(egress_allowed_hosts="127.0.0.1")

"""All configuration, from ``EVALFORGE_*`` environment variables.

Every external part is chosen by a URL. An empty URL means the embedded default that ``evalforge up``
starts in the data dir; scale-out deployments set every URL explicitly.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUS_SCHEMES = ("kafka", "redis", "embedded")
CLICKHOUSE_SCHEMES = ("http", "https", "chdb")
POSTGRES_SCHEMES = ("postgresql", "postgres")
REDIS_SCHEMES = ("redis", "rediss", "unix")
BLOB_SCHEMES = ("s3", "file")


class ConfigError(Exception):
    """Bad configuration; the message names the setting and is meant to be shown as one line."""


def _check_url(setting: str, url: str, schemes: tuple[str, ...]) -> str:
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"EVALFORGE_{setting.upper()}: cannot parse {url!r}: {exc}") from None
    if parts.scheme not in schemes:
        raise ConfigError(
            f"EVALFORGE_{setting.upper()}: unsupported scheme {parts.scheme!r} in {_redact(url)!r} "
            f"(expected one of: {', '.join(s + '://' for s in schemes)})"
        )
    if parts.scheme in ("kafka", "http", "https", "redis", "rediss", "postgresql", "postgres", "s3"):
        if not (parts.netloc or parts.path.strip("/")) and parts.scheme != "s3":
            raise ConfigError(f"EVALFORGE_{setting.upper()}: {_redact(url)!r} has no host")
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError:
            raise ConfigError(f"EVALFORGE_{setting.upper()}: bad port in {_redact(url)!r}") from None
    return url


def _redact(url: str) -> str:
    """Hide a password in a URL so that error messages never echo secrets."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


class Settings(BaseSettings):
    """Settings of every EvalForge service."""

    model_config = SettingsConfigDict(env_prefix="EVALFORGE_", extra="ignore")

    data_dir: Path = Field(Path(".evalforge"), description="where the embedded parts keep their data")
    host: str = "127.0.0.1"
    port: int = 4318
    grpc_port: int = Field(4317, ge=0, le=65535, description="OTLP/gRPC port of up / ingest; 0 = off")
    public_url: str = Field("", description="base URL for links in alerts; default http://host:port")

    bus_url: str = Field("", repr=False, description="kafka://host:9092[,host2:9092] | redis://… (Redis Streams) | empty = Redis Streams on the Redis of redis_url")
    clickhouse_url: str = Field("", repr=False, description="http(s)://user:pw@host:8123/db | chdb:///path | empty = embedded chDB")
    postgres_url: str = Field("", repr=False, description="postgresql://… | empty = embedded PostgreSQL")
    redis_url: str = Field("", repr=False, description="redis://… | empty = embedded Redis")
    blob_url: str = Field("", repr=False, description="s3://bucket?endpoint=http://…&region=… | file:///path | empty = <data_dir>/blobs")

    kafka_partitions: int = 8
    # 0: chosen by `migrate` from the brokers it finds: min(3, brokers) replicas, min.insync one less
    kafka_replication_factor: int = Field(0, ge=0)
    kafka_min_insync_replicas: int = Field(0, ge=0)
    processor_group: str = "evalforge-processors"
    sink_batch_rows: int = 5000
    sink_batch_ms: int = 1000
    sink_batch_bytes: int = 32 * 1024 * 1024  # bus record bytes per insert at most (big payloads)

    max_body_bytes: int = 16 * 1024 * 1024
    max_spans_per_request: int = 10_000
    max_attribute_bytes: int = 64 * 1024
    payload_offload_bytes: int = 32 * 1024
    # Bounds on what one ingest request may cost (hostile input must not stall a process).
    max_attributes_per_span: int = 10_000
    max_tags_per_span: int = 1_000
    max_scores_per_request: int = 1_000
    ingest_max_inflight_bytes: int = Field(
        256 * 1024 * 1024, description="request-body bytes one ingest process holds at most; beyond, 503 + Retry-After (0 = no cap)")
    redis_timeout_seconds: float = 5.0  # a command on the shared Redis (auth cache, rate limits) waits this long
    ingest_thread_decode_bytes: int = Field(
        256 * 1024, description="bodies this large or larger are decompressed and decoded off the event loop")
    rate_limit_spans_per_second: float = 0.0  # 0 = unlimited
    rate_limit_burst: float = 0.0  # default: one second's worth
    auth_cache_seconds: float = 30.0  # API keys, sessions and memberships
    admin_email: str = Field("admin@localhost", description="the user the first `evalforge up` creates")
    session_hours: float = 14 * 24.0  # a dashboard sign-in lasts this long
    login_max_failures: int = 5  # per email, within login_lockout_seconds; then 429 + Retry-After
    login_max_failures_per_ip: int = 50  # per client address (uvicorn trusts X-Forwarded-For only from FORWARDED_ALLOW_IPS)
    login_lockout_seconds: int = 900
    invitation_hours: float = 7 * 24.0
    bus_timeout_seconds: float = 5.0
    egress_allowed_hosts: str = Field(
        "", description="comma-separated host, host:port, IP or CIDR that outgoing calls made on a project's "
                        "behalf (webhooks, judge base URLs) may reach although they are loopback / private / "
                        "link-local (see core/egress.py)")
    judge_api_key: str = Field("", description="the server's model key: sent only when a call names no base_url "
                               "(the provider's own endpoint), never to a member's base_url", repr=False)
    judge_allowed_hosts: str = Field(
        "", description="deprecated alias: entries added to egress_allowed_hosts")
    judge_calls_per_minute: float = 60.0  # per project, shared by all eval workers; 0 = unlimited
    judge_daily_budget_usd: float = 0.0  # per project and UTC day; 0 = no cap

    @property
    def judge_hosts(self) -> frozenset[str]:
        """Deprecated: every egress allow-list entry (pass the settings to ``core.egress`` instead)."""
        raw = f"{self.egress_allowed_hosts},{self.judge_allowed_hosts}"
        return frozenset(h.strip().lower() for h in raw.split(",") if h.strip())

    @field_validator("bus_url")
    @classmethod
    def _bus(cls, v: str) -> str:
        return _check_url("bus_url", v, BUS_SCHEMES)

    @field_validator("clickhouse_url")
    @classmethod
    def _ch(cls, v: str) -> str:
        return _check_url("clickhouse_url", v, CLICKHOUSE_SCHEMES)

    @field_validator("postgres_url")
    @classmethod
    def _pg(cls, v: str) -> str:
        return _check_url("postgres_url", v, POSTGRES_SCHEMES)

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, v: str) -> str:
        return _check_url("redis_url", v, REDIS_SCHEMES)

    @field_validator("blob_url")
    @classmethod
    def _blob(cls, v: str) -> str:
        return _check_url("blob_url", v, BLOB_SCHEMES)

    @property
    def embedded_parts(self) -> set[str]:
        """Server processes the embedded stack must start (their URL is empty); chDB runs in-process."""
        parts = set()
        if not self.postgres_url:
            parts.add("postgres")
        if not self.redis_url:
            parts.add("redis")
        return parts

    @property
    def resolved_public_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one-line ConfigErrors."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err.get("msg", "invalid value"))
        if "EVALFORGE_" in msg:
            raise ConfigError(msg.removeprefix("Value error, ")) from None
        field = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        raise ConfigError(f"EVALFORGE_{field.upper()}: {msg}") from None

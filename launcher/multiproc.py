"""Several copies of one HTTP service on one port: each process binds its own socket with
SO_REUSEPORT and the kernel spreads new connections across them (Linux). A parent supervises them:
SIGTERM / SIGINT to the parent become one SIGTERM to each child (a graceful drain), and the parent
exits once they all have, with the worst exit code."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from collections.abc import Callable


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket that other processes may bind to the same address too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _child(target: Callable[..., None], args: tuple) -> None:
    os.setpgrp()  # a terminal's Ctrl-C reaches the parent only; it stops the children once, gracefully
    target(*args)


def run_processes(target: Callable[..., None], args: tuple, count: int, name: str) -> int:
    """Run ``target(*args)`` in ``count`` spawned processes until they exit; returns an exit code."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(target, args), name=f"{name}-{i}") for i in range(count)]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                os.kill(p.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for p in procs:
            p.start()
        while any(p.exitcode is None for p in procs):
            for p in procs:
                p.join(0.2)
                if p.exitcode not in (None, 0) and not stopping:
                    stop(signal.SIGTERM, None)  # one copy failed (e.g. bad config): stop the others
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # uvicorn re-raises the SIGTERM it drained on: a child ended by the SIGTERM we sent exited cleanly
    return max(0 if stopping and p.exitcode == -signal.SIGTERM else abs(p.exitcode or 0) for p in procs)

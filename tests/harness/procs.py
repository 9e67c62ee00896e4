"""Processes on this machine, read from /proc (Linux)."""

from __future__ import annotations

from pathlib import Path


def child_processes(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of each direct child of ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                out.append((int(stat.parent.name), cmdline))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(out)

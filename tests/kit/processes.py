"""Processes of a test: free ports to start servers on, and stopping them (`cli.supervisor`)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cli.supervisor import stop_group

__all__ = ["Peak", "children_of", "free_port", "peak_rss", "stop_group"]


def free_port() -> int:
    """A port free on 127.0.0.1 now (another process may take it before it is bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


_MEASURE = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss}))
"""


@dataclass(frozen=True)
class Peak:
    exit_code: int
    rss_mb: float
    stderr: str


def peak_rss(argv: list[str], *, env: dict[str, str], timeout: float = 600) -> Peak:
    """Run `argv` and report its peak RSS as the kernel counts it (`ru_maxrss`).

    Started from a small interpreter of its own: Linux counts the pages a child had at fork
    (before its exec) in its peak, so a child of a test session that has grown to hundreds of
    MB would report the session's size instead of its own."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return Peak(int(got["exit"]), got["maxrss_kib"] / 1024, proc.stderr)

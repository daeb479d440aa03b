"""`SHAREMIG_HOME/up-run.json`: which `sharemig up` last ran on a data dir, and its marker.

Every process an `up` starts (and every flow-run process its workers start) inherits the
marker in its environment. A later `up` that holds the data dir's lock knows that `up` is
gone, so whatever still carries its marker is an orphan of this data dir, found by the
marker and never by a process name (another user's Prefect server must survive).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cli.supervisor import describe, pids_with_env, sweep

FILE_NAME = "up-run.json"
ORPHAN_STOP_S = 15.0  # SIGTERM, then SIGKILL for what is still there after this long


@dataclass(frozen=True)
class UpRun:
    pid: int
    marker: str


def write_run(home: Path, run: UpRun) -> None:
    path = home / FILE_NAME
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": run.pid, "marker": run.marker}) + "\n")
    os.replace(tmp, path)


def read_run(home: Path) -> UpRun | None:
    try:
        raw = json.loads((home / FILE_NAME).read_text())
        return UpRun(int(raw["pid"]), str(raw["marker"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stop_orphans(home: Path, key: str, timeout: float = ORPHAN_STOP_S) -> list[str]:
    """Stop every process the previous `up` on `home` left behind; returns what was stopped.

    Call it only while holding the data dir's lock (the previous `up` is then dead).
    """
    last = read_run(home)
    if last is None:
        return []
    found = [describe(pid) for pid in pids_with_env(key, last.marker)]
    if found:
        sweep(key, last.marker, timeout=timeout)
    return found

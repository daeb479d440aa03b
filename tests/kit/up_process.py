"""`sharemig up` as a real subprocess for tests (CLI and browser), the way an operator runs it.

Commands run against it get a user's environment: SHAREMIG_HOME only, no PREFECT_API_URL, so
they find the Prefect server through endpoints.json as they would in a shell.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.supervisor import pids_with_env
from tests.kit.processes import free_port

SHAREMIG = str(Path(sys.executable).with_name("sharemig"))
UP_START_S = 240.0
# The planning walk's pace (entries/s) in `up`'s flow runs. Trees within one burst (the demo
# trees the tests use) are walked at full speed; a test that needs a run to be still running
# when it acts walks a few thousand more entries, which then take seconds on any machine.
WALK_LIMIT = 1000


def user_env(home: Path) -> dict[str, str]:
    """A shell's environment: nothing of the test session's Prefect, SHAREMIG_HOME set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHAREMIG_"))}
    env["SHAREMIG_HOME"] = str(home)
    # Speed only (the worker picks up runs sooner); `up` passes these to its children.
    env["PREFECT_WORKER_QUERY_SECONDS"] = "1"
    env["PREFECT_RUNNER_POLL_FREQUENCY"] = "1"
    return env


def pids_of_home(home: Path) -> list[int]:
    """Live (non-zombie) processes started with SHAREMIG_HOME=`home` in their environment."""
    return pids_with_env("SHAREMIG_HOME", str(home))


@dataclass
class UpProcess:
    proc: subprocess.Popen[bytes]
    home: Path
    log_path: Path
    api_port: int
    prefect_port: int

    @property
    def endpoints(self) -> dict[str, Any]:
        return dict(json.loads((self.home / "endpoints.json").read_text()))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sharemig(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run a `sharemig` command as the operator would, next to this `up`."""
        return subprocess.run(
            [SHAREMIG, *args],
            capture_output=True,
            text=True,
            env=user_env(self.home),
            timeout=timeout,
        )

    def interrupt(self, timeout: float = 90) -> int:
        """Ctrl-C: SIGINT to `up` alone (its children are in sessions of their own)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout)


def _published_by(home: Path, pid: int) -> bool:
    """endpoints.json is there and written by `pid` (a killed `up` leaves its own behind)."""
    try:
        return int(json.loads((home / "endpoints.json").read_text())["pid"]) == pid
    except (OSError, ValueError, KeyError):
        return False


@contextmanager
def run_up(
    home: Path,
    *,
    ports: tuple[int, int] | None = None,
    extra_env: dict[str, str] | None = None,
    log_name: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[UpProcess]:
    """`sharemig up --home HOME [extra_args]` on `ports` (API, Prefect; default: free ones);
    yields once endpoints.json is written by this `up`."""
    home.mkdir(parents=True, exist_ok=True)
    api_port, prefect_port = ports or (free_port(), free_port())
    log_path = home.parent / (log_name or f"{home.name}-up.log")
    env = user_env(home)
    env["SHAREMIG_WALK_LIMIT_ENTRIES"] = str(WALK_LIMIT)
    env.update(extra_env or {})
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                SHAREMIG,
                "up",
                "--home",
                str(home),
                "--api-port",
                str(api_port),
                "--prefect-port",
                str(prefect_port),
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    up = UpProcess(proc, home, log_path, api_port, prefect_port)
    try:
        deadline = time.monotonic() + UP_START_S
        while not _published_by(home, proc.pid):
            # Not wait_for: it would keep polling a process that already exited.
            assert proc.poll() is None, f"sharemig up exited ({proc.returncode}):\n{up.log()}"
            assert time.monotonic() < deadline, f"no endpoints.json in {UP_START_S}s:\n{up.log()}"
            time.sleep(0.5)
        yield up
    finally:
        if proc.poll() is None:
            try:
                up.interrupt()
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in pids_of_home(home):  # only if `up` failed at its one job
            os.kill(pid, signal.SIGKILL)

"""Child processes of `sharemig up`: start, wait until healthy, stop (whole process groups)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class StartupError(RuntimeError):
    """A child did not become healthy; the message says which and where its log is."""


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` that makes the child get SIGTERM when the process that forked it dies.

    The kernel fires it when the forking *thread* exits, so children must be started from a
    thread that lives as long as `up` (its main thread). libc is looked up here, in the
    parent: between fork and exec the child only calls an already loaded function.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code < 500
        except httpx.HTTPError:
            return False

    return check


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str]
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # Its own session, so stopping it takes its grandchildren too; SIGTERM when `up`
        # dies, even by SIGKILL (the OOM killer), so no child outlives it for long.
        self.proc = subprocess.Popen(
            list(self.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(self.env),
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise StartupError(f"{self.name} exited during start-up; see {self.log_path}")
            if check():
                return
            time.sleep(0.2)
        raise StartupError(f"{self.name} not healthy after {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM to the process group `proc` leads (started with `start_new_session`), SIGKILL
    after `timeout`, then to any stragglers left in the group."""
    if proc.poll() is not None:
        return
    pgid = os.getpgid(proc.pid)
    os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)  # stragglers left in the group


def pids_with_env(key: str, value: str) -> list[int]:
    """Live processes whose initial environment holds `key=value` (children inherit it)."""
    marker = f"{key}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and marker in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def describe(pid: int) -> str:
    """`pid` and its command line, shortened, for messages to an operator."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return f"pid {pid} (gone)"
    args = [a.decode(errors="replace") for a in argv[:5]]
    words = [os.path.basename(a) if a.startswith("/") else a for a in args]
    return f"pid {pid} ({' '.join(words)})"


def sweep(key: str, value: str, timeout: float = 10.0) -> list[int]:
    """Stop every process still marked `key=value`; returns the pids that had to be stopped.

    Flow-run processes start in sessions of their own (Prefect isolates them), so stopping
    the worker's process group does not reach them; the marker every child inherits does.
    """
    pids = pids_with_env(key, value)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            # A stopped process (SIGSTOP, a debugger) would keep SIGTERM pending forever.
            os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while pids_with_env(key, value) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids_with_env(key, value):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids

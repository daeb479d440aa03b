"""The parts of `sharemig up`: which processes, in which order they start and stop, and how
each one is judged healthy. The command (`cli/up_cmd.py`) only parses flags and prints.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from uuid import uuid4

import httpx

from cli.endpoints import Endpoints, read_endpoints, write_endpoints
from cli.supervisor import Child, StartupError, http_ok, port_in_use, sweep
from cli.up_runfile import UpRun, stop_orphans, write_run
from flows.warm_launch import SOCKET_ENV
from flows.zygote import ping, socket_path
from storage.errors import NotFoundError

# Every child (and every flow-run process a worker starts) inherits this variable, so a stop
# can find what Prefect started in sessions of its own.
MARKER_ENV = "SHAREMIG_UP_RUN"
SERVER_START_S = 180.0  # a fresh Prefect database runs its migrations first (~12 s idle)
CHILD_START_S = 90.0


@dataclass(frozen=True)
class UpOptions:
    home: Path
    host: str
    api_port: int
    prefect_port: int
    work_pool: str
    project: str
    workers: int = 1
    external_prefect_api_url: str | None = None
    prefect_database_url: str | None = None
    database_url: str | None = None


def _url_host(host: str) -> str:
    """Where clients on this machine reach a service bound to `host`."""
    return "127.0.0.1" if host in {"", "0.0.0.0", "::"} else host


def _executable(name: str) -> str:
    """A console script of this environment (the venv `sharemig` runs from), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else (shutil.which(name) or name)


class Stack:
    """The Prefect server (unless external), the workers and the API shim of one `up`."""

    def __init__(self, opts: UpOptions, say: Callable[[str], None]) -> None:
        self.opts = opts
        self.say = say
        self.marker = uuid4().hex
        self.children: list[Child] = []
        self.zygotes: list[tuple[Child, Path]] = []
        host = _url_host(opts.host)
        self.prefect_api_url = (
            opts.external_prefect_api_url or f"http://{host}:{opts.prefect_port}/api"
        ).rstrip("/")
        self.prefect_url = self.prefect_api_url.removesuffix("/api")
        self.api_url = f"http://{host}:{opts.api_port}"
        self.logs = opts.home / "logs"
        self._lock: IO[str] | None = None
        self.orphans_stopped: list[str] = []
        """Processes a previous `up` on this data dir left running, stopped by `refusal`."""

    # ---- before anything starts -------------------------------------------------------

    def refusal(self) -> str | None:
        """Why this `up` must not start (another one runs, a port is taken), or None.

        Holds the data dir's lock from here on, so two `up`s started at the same instant on
        one data dir cannot both pass. Holding it proves the last `up` here is gone: whatever
        it left running (it was killed with no chance to stop its children) is stopped first,
        so its ports are free again and its flow runs stop writing (recovery resumes them).
        """
        self._lock = (self.opts.home / "up.lock").open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                other = read_endpoints(self.opts.home)
                where = f" (pid {other.pid}; Prefect UI {other.prefect_url}, API {other.api_url})"
            except NotFoundError:
                where = ""
            return (
                f"`sharemig up` is already running on {self.opts.home}{where}; "
                "stop it first (Ctrl-C), or use another --home"
            )
        self.orphans_stopped = stop_orphans(self.opts.home, MARKER_ENV)
        write_run(self.opts.home, UpRun(os.getpid(), self.marker))
        wanted = [("API shim", "--api-port", self.opts.api_port)]
        if self.opts.external_prefect_api_url is None:
            wanted.insert(0, ("Prefect server", "--prefect-port", self.opts.prefect_port))
        for what, flag, port in wanted:
            if port_in_use(self.opts.host, port):
                return (
                    f"port {port} on {self.opts.host} (for the {what}) is already in use, "
                    f"perhaps by another `sharemig up`; stop that or choose another port "
                    f"with {flag}"
                )
        return None

    def environment(self) -> dict[str, str]:
        """The environment of every child: one data dir, one Prefect API, the stop marker."""
        env = dict(os.environ)
        env["SHAREMIG_HOME"] = str(self.opts.home)
        env["PREFECT_API_URL"] = self.prefect_api_url
        env["PREFECT_HOME"] = str(self.opts.home / "prefect")
        env[MARKER_ENV] = self.marker
        env["PREFECT_SERVER_API_HOST"] = self.opts.host
        env["PREFECT_SERVER_API_PORT"] = str(self.opts.prefect_port)
        env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        # Runs start (and resumed runs re-enter) within this many seconds; the default is 10.
        # Half of it, on average, is in every flow-run start's fixed cost (two per migration).
        env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")
        if self.opts.database_url:
            env["SHAREMIG_DATABASE_URL"] = self.opts.database_url
        if self.opts.prefect_database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.opts.prefect_database_url
        return env

    # ---- start ------------------------------------------------------------------------

    def start(self, prepare: Callable[[], object], apply: Callable[[], object]) -> None:
        """Start everything, waiting until each part is healthy.

        `prepare` upgrades sharemig's database (it runs while the Prefect server boots);
        `apply` applies prefect.yaml once the Prefect API answers.
        """
        env = self.environment()
        server: Child | None = None
        began = time.monotonic()
        if self.opts.external_prefect_api_url is None:
            server = self._spawn(
                "Prefect server",
                [
                    _executable("prefect"),
                    "server",
                    "start",
                    "--host",
                    self.opts.host,
                    "--port",
                    str(self.opts.prefect_port),
                ],
                env,
                "prefect-server.log",
            )
        prepare()
        self.say("sharemig database upgraded, pools synced")
        health = http_ok(f"{self.prefect_api_url}/health")
        if server is not None:
            server.wait_healthy(health, SERVER_START_S)
            self.say(f"Prefect server healthy at {self.prefect_url} ({_since(began)})")
        elif not health():
            raise StartupError(f"the Prefect API at {self.prefect_api_url} does not answer")
        apply()
        self.say(f"prefect.yaml applied (work pool {self.opts.work_pool!r} and deployments)")
        workers_at = datetime.now(UTC)
        workers = [self._spawn_worker(i, env) for i in range(1, self.opts.workers + 1)]
        shim = self._spawn(
            "API shim",
            [
                _executable("sharemig"),
                "api",
                "--host",
                self.opts.host,
                "--port",
                str(self.opts.api_port),
                "--log-level",
                "warning",
            ],
            env,
            "api.log",
        )
        shim.wait_healthy(http_ok(f"{self.api_url}/"), CHILD_START_S)
        self.say(f"API shim healthy at {self.api_url}")
        for worker in workers:
            worker.wait_healthy(self._worker_online(worker.name, workers_at), CHILD_START_S)
        for zygote, path in self.zygotes:
            zygote.wait_healthy(functools.partial(ping, path), CHILD_START_S)
        self.say(
            f"{len(workers)} worker(s) polling work pool {self.opts.work_pool!r}, "
            "each with a zygote for warm flow-run starts"
        )

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], log: str, cwd: Path | None = None
    ) -> Child:
        child = Child(name, argv, self.logs / log, env, cwd=cwd)
        self.children.append(child)
        child.start()
        return child

    def _spawn_worker(self, index: int, env: dict[str, str]) -> Child:
        name = f"sharemig-{socket.gethostname()}-{index}"
        # An empty working directory: a process worker prepares every flow run's workspace
        # from its own working directory, which must not be the data dir.
        cwd = self.opts.home / "worker"
        cwd.mkdir(parents=True, exist_ok=True)
        # Its flow runs start warm from it; until it answers (or should it die) they start
        # cold, and their logs say so.
        zygote = socket_path(self.opts.home, index)
        self.zygotes.append(
            (
                self._spawn(
                    f"zygote of worker {index}",
                    [sys.executable, "-m", "flows.zygote", "serve", str(zygote)],
                    env,
                    f"zygote-{index}.log",
                    cwd=cwd,
                ),
                zygote,
            )
        )
        argv = [
            sys.executable,
            "-m",
            "flows.prefect_worker",  # `prefect worker start` with a memory housekeeper
            "worker",
            "start",
            "--pool",
            self.opts.work_pool,
            "--type",
            "process",
            "--name",
            name,
        ]
        worker_env = {**env, SOCKET_ENV: str(zygote)}
        return self._spawn(name, argv, worker_env, f"worker-{index}.log", cwd=cwd)

    def _worker_online(self, name: str, since: datetime) -> Callable[[], bool]:
        """The named worker has sent a heartbeat since this `up` started it."""
        url = f"{self.prefect_api_url}/work_pools/{self.opts.work_pool}/workers/filter"

        def check() -> bool:
            try:
                rows = httpx.post(url, json={}, timeout=3.0).json()
            except (httpx.HTTPError, ValueError):
                return False
            for row in rows if isinstance(rows, list) else []:
                beat = row.get("last_heartbeat_time")
                if row.get("name") == name and beat and datetime.fromisoformat(beat) >= since:
                    return True
            return False

        return check

    # ---- run and stop -----------------------------------------------------------------

    def endpoints(self, admin_token: str, member_token: str) -> Endpoints:
        return Endpoints(
            api_url=self.api_url,
            prefect_url=self.prefect_url,
            prefect_api_url=self.prefect_api_url,
            project_id=self.opts.project,
            admin_token=admin_token,
            member_token=member_token,
            home=str(self.opts.home),
            pid=os.getpid(),
            database_url=self.opts.database_url,
        )

    def publish(self, endpoints: Endpoints) -> Path:
        return write_endpoints(endpoints, self.opts.home)

    def dead_child(self) -> Child | None:
        return next((c for c in self.children if not c.alive()), None)

    def stop(self) -> None:
        """Shim first (no new requests), then workers and their flow runs, then the server."""
        for child in reversed(self.children):
            if child.name != "Prefect server":
                child.stop()
        sweep(MARKER_ENV, self.marker)
        for child in self.children:
            child.stop()
        sweep(MARKER_ENV, self.marker)


def _since(t0: float) -> str:
    return f"{time.monotonic() - t0:.1f} s"

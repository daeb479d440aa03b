"""A sharemig stack the kill matrix may break: its own Prefect server, worker and API shim.

The session's server and worker (fixtures in tests/conftest.py) are shared by other suites,
so killing them would break those; this stack has its own port, PREFECT_HOME, sharemig data dir
and work pool, and each part can be killed with SIGKILL and started again on the same port.
Under .ci/run's PostgreSQL step both databases are fresh PostgreSQL databases.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cli.supervisor import pids_with_env
from tests.kit.prefect_service import PREFECT
from tests.kit.processes import children_of, free_port
from tests.kit.waiting import wait_for

SHAREMIG = str(Path(sys.executable).with_name("sharemig"))
WORK_POOL = "sharemig-kill"
POOL_A = "kill@localfs#a"
POOL_B = "kill@localfs#b"
PROJECT = "rel"
OTHER_PROJECT = "other"
# The copy is paced so a kill lands mid-copy without a large tree: the matrix's trees
# (240 files, ~9.5 MiB) take ~9 s at this rate whatever the machine's speed (one throttle per
# copy, split between the workers, after a second of burst).
BANDWIDTH = 1 << 20
BATCH_MAX_FILES = 16
# Likewise for planning: unthrottled, a thousand-file walk is over in ~20 ms, too quick for
# a kill to land inside it. At this pace (after a burst of WALK_LIMIT entries) a 500-file walk
# takes ~4 s and the switchover's final-sync walk of a 240-file tree ~1.7 s.
WALK_LIMIT = 100
# A killed run counts as dead once its lease expires: short, so recovery acts within seconds.
LEASE_TTL_S = 3


def processes_with_env(marker: str) -> list[int]:
    """Live processes whose environment holds `marker` (`NAME=value`)."""
    key, _, value = marker.partition("=")
    return pids_with_env(key, value)


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children_of(current))
    return found


def kill9(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _reap(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


@contextlib.contextmanager
def fresh_prefect_pg() -> Iterator[str | None]:
    """A new PostgreSQL database for Prefect when the PostgreSQL step asks for one."""
    base = os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL")
    if not base or not os.environ.get("SHAREMIG_TEST_PG_URL"):
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(
        make_url(os.environ["SHAREMIG_TEST_PG_URL"]), isolation_level="AUTOCOMMIT"
    )
    name = f"p_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Stack:
    root: Path
    db_url: str
    prefect_db_url: str | None
    port: int = field(default_factory=free_port)
    shim_port: int = field(default_factory=free_port)
    server: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    shim: subprocess.Popen[bytes] | None = None
    worker_env: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def shim_url(self) -> str:
        return f"http://127.0.0.1:{self.shim_port}"

    def pool_dir(self, pool: str) -> Path:
        return self.home / "pools" / pool.rsplit("#", 1)[1]

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHAREMIG_"))}
        env.update(
            PREFECT_HOME=str(self.root / "prefect-home"),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_API_PORT=str(self.port),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_RUNNER_POLL_FREQUENCY="1",
            PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS="1",
            SHAREMIG_HOME=str(self.home),
            SHAREMIG_DATABASE_URL=self.db_url,
            SHAREMIG_LEASE_TTL_S=str(LEASE_TTL_S),
        )
        if self.prefect_db_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.prefect_db_url
        env.update(extra)
        return env

    def _log(self, name: str) -> Any:
        return (self.root / f"{name}.log").open("ab")

    def _spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        ready: Callable[[], bool],
        *,
        timeout: float,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start one part of the stack (its output in `<name>.log`) and wait until `ready()`;
        fails at once, with the log's tail, if it exits first."""
        with self._log(name) as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
            )

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited:\n{self.log_tail(name)}")
            return ready()

        wait_for(up, timeout=timeout, interval=0.3, what=f"the kill stack's {name}")
        return proc

    def log_tail(self, name: str, n: int = 40) -> str:
        path = self.root / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-n:])

    # --- the Prefect server ------------------------------------------------------------

    def start_server(self) -> None:
        self.server = self._spawn(
            "server",
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            self.env(),
            lambda: httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200,
            timeout=180,
        )

    def kill_server(self) -> None:
        """SIGKILL to the server and everything it started (its uvicorn, its services)."""
        assert self.server is not None
        kill9(descendants(self.server.pid))
        _reap(self.server)

    def pause_server(self, paused: bool) -> None:
        """SIGSTOP / SIGCONT: the server hangs, as one that stopped answering."""
        assert self.server is not None
        sig = signal.SIGSTOP if paused else signal.SIGCONT
        for pid in descendants(self.server.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # --- the worker --------------------------------------------------------------------

    def start_worker(self, **extra_env: str) -> None:
        from prefect import get_client

        env = self.env(
            SHAREMIG_BATCH_MAX_FILES=str(BATCH_MAX_FILES),
            SHAREMIG_COPY_WORKERS="2",
            SHAREMIG_BANDWIDTH_LIMIT_BYTES=str(BANDWIDTH),
            SHAREMIG_WALK_LIMIT_ENTRIES=str(WALK_LIMIT),
            **extra_env,
        )
        self.worker_env = env

        def online() -> bool:
            with get_client(sync_client=True) as client:
                workers = client.read_workers_for_work_pool(WORK_POOL)
                return any(w.status.value == "ONLINE" for w in workers)

        self.worker = self._spawn(
            "worker",
            [PREFECT, "worker", "start", "--pool", WORK_POOL, "--type", "process"],
            env,
            online,
            timeout=120,
            cwd=self.root,
        )

    def kill_worker(self, *, with_runs: bool) -> list[int]:
        """SIGKILL the worker alone, or the worker and its flow runs (a host's crash)."""
        assert self.worker is not None
        pids = descendants(self.worker.pid) if with_runs else [self.worker.pid]
        kill9(pids)
        _reap(self.worker)
        return pids

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            kill9(descendants(self.worker.pid))
            _reap(self.worker)

    # --- the API shim ------------------------------------------------------------------

    def start_shim(self, log_level: str = "info") -> None:
        argv = [SHAREMIG, "api", "--host", "127.0.0.1", "--port", str(self.shim_port)]
        self.shim = self._spawn(
            "shim",
            [*argv, "--log-level", log_level],
            self.env(),
            lambda: httpx.get(self.shim_url + "/", timeout=2).status_code == 300,
            timeout=60,
        )

    def kill_shim(self) -> None:
        assert self.shim is not None
        kill9(descendants(self.shim.pid))
        _reap(self.shim)

    def client(self, token: str = "admin", project: str = PROJECT) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.shim_url}/v2/{project}",
            headers={
                "X-Auth-Token": self.tokens.get(token, token),
                "X-OpenStack-Manila-API-Version": "2.99",
                "Content-Type": "application/json",
            },
            timeout=60,
        )

    def stop(self) -> None:
        for proc in (self.shim, self.worker, self.server):
            if proc is not None and proc.poll() is None:
                kill9(descendants(proc.pid))
                _reap(proc)


def _prepare_home(stack: Stack) -> None:
    from storage.catalog import ensure_default_share_type
    from storage.db import session_scope, upgrade
    from storage.inventory import parse_inventory, sync_inventory
    from storage.tokens import create_token

    entries = []
    for name in (POOL_A, POOL_B):
        stack.pool_dir(name).mkdir(parents=True)
        entries.append(
            {
                "name": name,
                "driver": "localfs",
                "url": stack.pool_dir(name).as_uri(),
                "capacity_gb": 100,
            }
        )
    inventory = {"pools": entries}
    (stack.home / "pools.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    upgrade(stack.db_url)
    with session_scope(stack.db_url) as s:
        sync_inventory(s, parse_inventory(yaml.safe_dump(inventory)))
        ensure_default_share_type(s)
    path = stack.home / "tokens.yaml"
    stack.tokens = {
        "admin": create_token(PROJECT, admin=True, path=path),
        "member": create_token(PROJECT, path=path),
        "other_admin": create_token(OTHER_PROJECT, admin=True, path=path),
        "other_member": create_token(OTHER_PROJECT, path=path),
    }


@contextlib.contextmanager
def prepared_stack(stack: Stack, **env: str) -> Iterator[Stack]:
    """The stack's data dir prepared and this process's sharemig settings pointed at it (plus
    `env`); on the way out every process of the stack is stopped and the settings restored."""
    from storage.settings import reset_settings

    stack.home.mkdir(parents=True)
    mp = pytest.MonkeyPatch()
    try:
        for key, value in {
            "SHAREMIG_HOME": str(stack.home),
            "SHAREMIG_DATABASE_URL": stack.db_url,
            **env,
        }.items():
            mp.setenv(key, value)
        reset_settings()
        _prepare_home(stack)
        yield stack
    finally:
        stack.stop()
        mp.undo()
        reset_settings()


@contextlib.contextmanager
def running_stack(root: Path) -> Iterator[Stack]:
    """Server, deployments (on the stack's own work pool), worker and shim, all running.

    While the block runs, this process's Prefect client and sharemig settings point at it.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import apply_deployments

    sharemig_pg = contextlib.nullcontext(None)
    if os.environ.get("SHAREMIG_TEST_SERVICE_DB_URL"):
        from tests.kit.postgres import fresh_pg_database

        sharemig_pg = fresh_pg_database()  # type: ignore[assignment]
    with sharemig_pg as pg_url, fresh_prefect_pg() as prefect_pg:
        stack = Stack(root, pg_url or f"sqlite:///{root / 'home' / 'sharemig.db'}", prefect_pg)
        with prepared_stack(stack, SHAREMIG_LEASE_TTL_S=str(LEASE_TTL_S)):
            stack.start_server()
            with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
                apply_deployments(work_pool=WORK_POOL)
                stack.start_worker()
                stack.start_shim()
                yield stack


@contextlib.contextmanager
def idle_shim(root: Path, log_level: str = "info") -> Iterator[Stack]:
    """Only the shim, on SQLite, with nothing at its PREFECT_API_URL (a valid start is a 503)."""
    stack = Stack(root, f"sqlite:///{root / 'home' / 'sharemig.db'}", None)
    with prepared_stack(stack):
        stack.start_shim(log_level)
        yield stack

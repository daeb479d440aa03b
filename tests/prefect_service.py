"""Session fixtures for tests that need real Prefect: a server, the deployments, a worker.

`prefect_server` runs `prefect server start` on the port tests/conftest.py put in
PREFECT_API_URL (its own PREFECT_HOME). `deployed` applies prefect.yaml exactly as
`sharemig up` does. `worker` runs a real process worker on that pool whose flow runs use the
session's sharemig data dir (`service_home`), the same one `service_env` points a test at.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

WORK_POOL = "sharemig"
BANDWIDTH = 8 << 20
"""Copy throttle (bytes/s) of the session worker's flow runs."""
PREFECT = str(Path(sys.executable).with_name("prefect"))


def wait_for(
    condition: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = ""
) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds.

    A condition raises AssertionError when what it waits for can no longer come (the
    migration failed, the run ended, the state went past): that fails the wait at once
    instead of at the timeout. Other exceptions (a server restarting) are polled through.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except AssertionError:
            raise
        except Exception as exc:  # keep polling; report the last problem on timeout
            last_exc = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: {last_exc}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


@pytest.fixture(scope="session")
def prefect_server(session_dir: Path) -> Iterator[str]:
    """A real `prefect server start`; yields its API URL once /api/health answers."""
    import httpx

    api_url = os.environ["PREFECT_API_URL"]
    port = os.environ["PREFECT_SERVER_API_PORT"]
    log_path = session_dir / "prefect-server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
            start_new_session=True,
        )
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"prefect server exited:\n{_log_tail(log_path)}")
            return httpx.get(f"{api_url}/health", timeout=2).status_code == 200

        wait_for(healthy, timeout=90, interval=0.5, what="prefect server /api/health")
        yield api_url
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def deployed(prefect_server: str) -> dict[str, Any]:
    """The work pool and deployments of prefect.yaml, applied like `sharemig up` does."""
    from flows.deploy import apply_deployments

    return apply_deployments(work_pool=WORK_POOL)


@pytest.fixture(scope="session")
def service_home(session_dir: Path) -> Path:
    """The sharemig data dir the worker's flow runs use: schema, demo pools, test pools."""
    from storage.bootstrap import demo_inventory
    from storage.catalog import ensure_default_share_type
    from storage.db import session_scope, upgrade
    from storage.inventory import parse_inventory, sync_inventory

    home = session_dir / "sharemig-home"
    inventory = demo_inventory(home)
    pools: list[dict[str, Any]] = inventory["pools"]  # type: ignore[assignment]
    # A pool whose root is a plain file: creating an instance there fails permanently.
    broken = home / "pools" / "broken-root"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text("not a directory\n")
    pools.append(
        {
            "name": "sharemig@localfs#broken",
            "driver": "localfs",
            "url": broken.as_uri(),
            "capacity_gb": 100,
        }
    )
    for pool in pools:
        if pool["name"] != "sharemig@localfs#broken":
            Path(pool["url"].removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    (home / "pools.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    url = _service_db_url(home)
    upgrade(url)
    with session_scope(url) as s:
        sync_inventory(s, parse_inventory(yaml.safe_dump(inventory)))
        ensure_default_share_type(s)
    return home


def _service_db_url(home: Path) -> str:
    """SQLite in the data dir; in .ci/run's PostgreSQL step, the database it names."""
    return os.environ.get("SHAREMIG_TEST_SERVICE_DB_URL") or f"sqlite:///{home / 'sharemig.db'}"


def _service_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SHAREMIG_HOME"] = str(home)
    env.pop("SHAREMIG_DATABASE_URL", None)
    if os.environ.get("SHAREMIG_TEST_SERVICE_DB_URL"):
        env["SHAREMIG_DATABASE_URL"] = os.environ["SHAREMIG_TEST_SERVICE_DB_URL"]
    env.pop("SHAREMIG_POOLS_FILE", None)
    # Small batches so a copy spans many tasks (and a cancel can land mid-copy).
    env["SHAREMIG_BATCH_MAX_FILES"] = "64"
    env["SHAREMIG_COPY_WORKERS"] = "2"
    # Paces the copy so a cancel lands mid-copy whatever the machine's speed. The mover gives
    # each batch a fresh throttle with a second of burst (4 MiB per worker here): trees of
    # small files copy at full speed; a batch of 64 x 256 KiB files takes ~3 s.
    env["SHAREMIG_BANDWIDTH_LIMIT_BYTES"] = str(BANDWIDTH)
    return env


@pytest.fixture(scope="session")
def worker(deployed: dict[str, Any], service_home: Path, session_dir: Path) -> Iterator[int]:
    """A real `prefect worker` (process type) on the sharemig pool; yields its pid."""
    from prefect import get_client

    log_path = session_dir / "prefect-worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", WORK_POOL, "--type", "process"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_service_env(service_home),
            cwd=str(session_dir),
            start_new_session=True,
        )

    def online() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"prefect worker exited:\n{_log_tail(log_path)}")
        with get_client(sync_client=True) as client:
            return bool(client.read_workers_for_work_pool(WORK_POOL))

    try:
        wait_for(online, timeout=60, interval=0.5, what="the worker to register")
        yield proc.pid
    finally:
        _stop(proc)


@pytest.fixture
def service_env(worker: int, service_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point this test's process at the worker's sharemig data dir (same DB, same pools)."""
    from storage.settings import reset_settings

    for key, value in _service_env(service_home).items():
        if key.startswith("SHAREMIG_"):
            monkeypatch.setenv(key, value)
    reset_settings()
    yield service_home
    reset_settings()

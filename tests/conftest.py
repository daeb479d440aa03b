"""Test-wide set-up. Prefect reads its settings at import, so its environment is set here first.

Every test session gets its own PREFECT_HOME and a free port for a real `prefect server`
(started only by the fixtures below that need it; tests/kit/prefect_service.py).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kit.processes import free_port, stop_group

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="sharemig-tests-"))
if "PREFECT_API_URL" not in os.environ or os.environ.get("SHAREMIG_TEST_OWN_PREFECT", "1") == "1":
    _PORT = free_port()
    os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect-home")
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{_PORT}/api"
    os.environ["PREFECT_SERVER_API_PORT"] = str(_PORT)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "1")
os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")
os.environ.setdefault("PREFECT_UI_ENABLED", "true")

# The kit imports Prefect only inside functions, after the environment above is set.
from tests.kit.prefect_service import (  # noqa: E402
    POOL_BROKEN,
    PREFECT,
    WORK_POOL,
    log_tail,
    service_db_url,
    service_env_vars,
)
from tests.kit.waiting import wait_for  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`scale` scenarios (10-25 min each) run on demand only: with `-m` naming the marker."""
    if "scale" in (config.option.markexpr or ""):
        return
    on_demand = pytest.mark.skip(reason="a `scale` scenario: on demand, run with -m scale")
    for item in items:
        if item.get_closest_marker("scale") is not None:
            item.add_marker(on_demand)


@pytest.fixture(autouse=True)
def _no_freeze_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test that fails mid-migration may leave a frozen (read-only bind-mounted) source;
    lift it so the temp dirs can be removed and later tests see a clean mount table. Only
    this session's directories: another session on the machine may be mid-migration."""
    yield
    from storage.source_freeze import frozen_under, lift_dir

    for root in (_SESSION_DIR, tmp_path_factory.getbasetemp()):
        for path in frozen_under(root):
            lift_dir(path)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture
def sharemig_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh SHAREMIG_HOME (SQLite file, inventory, tokens) for one test."""
    from storage.db import dispose_engines
    from storage.settings import reset_settings

    home = tmp_path / "home"
    monkeypatch.setenv("SHAREMIG_HOME", str(home))
    monkeypatch.delenv("SHAREMIG_DATABASE_URL", raising=False)
    monkeypatch.delenv("SHAREMIG_POOLS_FILE", raising=False)
    reset_settings()
    from tests.kit.postgres import fresh_pg_database, postgres_requested

    if not postgres_requested():
        yield home
    else:  # the same tests against PostgreSQL (.ci/run's PostgreSQL step)
        with fresh_pg_database() as url:
            monkeypatch.setenv("SHAREMIG_DATABASE_URL", url)
            reset_settings()
            yield home
    dispose_engines()
    reset_settings()


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
                raise AssertionError(f"prefect server exited:\n{log_tail(log_path)}")
            return httpx.get(f"{api_url}/health", timeout=2).status_code == 200

        wait_for(healthy, timeout=90, interval=0.5, what="prefect server /api/health")
        yield api_url
    finally:
        stop_group(proc)


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
            "name": POOL_BROKEN,
            "driver": "localfs",
            "url": broken.as_uri(),
            "capacity_gb": 100,
        }
    )
    for pool in pools:
        if pool["name"] != POOL_BROKEN:
            Path(pool["url"].removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    (home / "pools.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    url = service_db_url(home)
    upgrade(url)
    with session_scope(url) as s:
        sync_inventory(s, parse_inventory(yaml.safe_dump(inventory)))
        ensure_default_share_type(s)
    return home


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
            env=service_env_vars(service_home),
            cwd=str(session_dir),
            start_new_session=True,
        )

    def online() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"prefect worker exited:\n{log_tail(log_path)}")
        with get_client(sync_client=True) as client:
            return bool(client.read_workers_for_work_pool(WORK_POOL))

    try:
        wait_for(online, timeout=60, interval=0.5, what="the worker to register")
        yield proc.pid
    finally:
        stop_group(proc)


@pytest.fixture
def service_env(worker: int, service_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point this test's process at the worker's sharemig data dir (same DB, same pools)."""
    from storage.settings import reset_settings

    for key, value in service_env_vars(service_home).items():
        if key.startswith("SHAREMIG_"):
            monkeypatch.setenv(key, value)
    reset_settings()
    yield service_home
    reset_settings()

"""Test-wide set-up. Prefect reads its settings at import, so its environment is set here first.

Every test session gets its own PREFECT_HOME and a free port for a real `prefect server`
(started only by the fixtures that need it, see tests/prefect_service.py).
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

# Real Prefect server / deployments / worker fixtures (imported after the environment is set).
from prefect_service import (  # noqa: E402, F401
    deployed,
    prefect_server,
    service_env,
    service_home,
    worker,
)


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
    from pg_kit import fresh_pg_database, postgres_requested

    if not postgres_requested():
        yield home
    else:  # the same tests against PostgreSQL (.ci/run's PostgreSQL step)
        with fresh_pg_database() as url:
            monkeypatch.setenv("SHAREMIG_DATABASE_URL", url)
            reset_settings()
            yield home
    dispose_engines()
    reset_settings()

"""Fixtures for the reliability suites: a database (SQLite file, or PostgreSQL when
$SHAREMIG_TEST_PG_URL is set), real pool directories, and the scenario ledger that the
closing table (scenario | runs | outcomes | bytes lost) is printed from.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kit.postgres import PG_URL_ENV, fresh_pg_database
from tests.kit.reliability import (
    LEDGER,
    POOL_A,
    POOL_B,
    POOL_FAULTY_DST,
    POOL_FAULTY_SRC,
    POOL_TINY,
)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not LEDGER:
        return
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"runs": 0, "out": {}, "lost": 0})
    for entry in LEDGER:
        row = rows[entry["scenario"]]
        row["runs"] += 1
        row["out"][entry["outcome"]] = row["out"].get(entry["outcome"], 0) + 1
        row["lost"] += entry["bytes_lost"]
    tr = terminalreporter
    tr.section("reliability scenarios")
    tr.write_line("scenario | runs | outcomes | bytes lost")
    for name, row in rows.items():
        outcomes = ", ".join(f"{k} x{v}" for k, v in sorted(row["out"].items()))
        tr.write_line(f"{name} | {row['runs']} | {outcomes} | {row['lost']}")


@pytest.fixture(params=["sqlite", "postgres"])
def rel_db(request: pytest.FixtureRequest, sharemig_home: Path) -> Iterator[str]:
    """A migrated, empty sharemig database; the test's settings point at it."""
    from storage.db import upgrade
    from storage.settings import reset_settings

    if request.param == "sqlite":
        url = f"sqlite:///{sharemig_home / 'sharemig.db'}"
        upgrade(url)
        yield url
        return
    if not os.environ.get(PG_URL_ENV):
        pytest.skip(f"{PG_URL_ENV} is not set (.ci/postgres starts a server)")
    mp = pytest.MonkeyPatch()
    with fresh_pg_database() as url:
        mp.setenv("SHAREMIG_DATABASE_URL", url)
        reset_settings()
        upgrade(url)
        try:
            yield url
        finally:
            mp.undo()
            reset_settings()


@pytest.fixture
def pools(rel_db: str, tmp_path: Path) -> dict[str, Path]:
    """Two localfs pools, a 3 GiB one, and two fsspec pools behind `faulty://`."""
    from storage.catalog import ensure_default_share_type
    from storage.db import session_scope
    from storage.inventory import parse_inventory, sync_inventory
    from tests.kit.faulty_fs import register, set_faults

    register()
    set_faults()
    dirs = {}
    entries = []
    for name, driver, scheme, capacity in (
        (POOL_A, "localfs", "file", 100),
        (POOL_B, "localfs", "file", 100),
        (POOL_TINY, "localfs", "file", 3),
        (POOL_FAULTY_SRC, "fsspec", "faulty", 100),
        (POOL_FAULTY_DST, "fsspec", "faulty", 100),
    ):
        root = tmp_path / "pools" / name.rsplit("#", 1)[1]
        root.mkdir(parents=True)
        dirs[name] = root
        url = root.as_uri() if scheme == "file" else f"faulty://{root}"
        entries.append({"name": name, "driver": driver, "url": url, "capacity_gb": capacity})
    with session_scope(rel_db) as s:
        sync_inventory(s, parse_inventory(yaml.safe_dump({"pools": entries})))
        ensure_default_share_type(s)
    yield dirs
    set_faults()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The kill matrix's own Prefect server, worker and shim (tests/kit/kill_stack.py)."""
    from tests.kit.kill_stack import running_stack

    with running_stack(tmp_path_factory.mktemp("kill-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def idle_shim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real `sharemig api` (debug logging) with no Prefect behind it, on its own SQLite."""
    from tests.kit.kill_stack import idle_shim

    with idle_shim(tmp_path_factory.mktemp("idle-shim"), log_level="debug") as running:
        yield running

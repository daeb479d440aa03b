"""Fixtures for storage tests: a real SQLite file with the schema, real pool directories."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy.orm import Session

from storage.catalog import ensure_default_share_type
from storage.db import session_scope, upgrade
from storage.inventory import parse_inventory, sync_inventory


@pytest.fixture(scope="session")
def schema_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file at the schema head, copied for each test instead of upgrading each."""
    from storage.db import dispose_engines

    path = tmp_path_factory.mktemp("schema") / "sharemig.db"
    upgrade(f"sqlite:///{path}")
    dispose_engines()  # checkpoints the WAL into the file, so a plain copy holds the schema
    return path


@pytest.fixture
def db_url(sharemig_home: Path, schema_template: Path) -> str:
    from storage.settings import get_settings

    url = get_settings().db_url  # SQLite under sharemig_home, or PostgreSQL in that CI step
    if url.startswith("sqlite:///"):
        target = Path(url.removeprefix("sqlite:///"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(schema_template, target)
    upgrade(url)  # at the head already for a copy: returns without Alembic
    return url


@pytest.fixture
def pools_dir(tmp_path: Path) -> Path:
    root = tmp_path / "pools"
    for name in ("a", "b", "obj"):
        (root / name).mkdir(parents=True)
    return root


@pytest.fixture
def inventory_yaml(pools_dir: Path) -> str:
    return yaml.safe_dump(
        {
            "pools": [
                {
                    "name": "h1@lfs#a",
                    "driver": "localfs",
                    "url": (pools_dir / "a").as_uri(),
                    "capacity_gb": 10,
                },
                {
                    "name": "h1@lfs#b",
                    "driver": "localfs",
                    "url": (pools_dir / "b").as_uri(),
                    "capacity_gb": 20,
                },
                {
                    "name": "h2@obj#bucket",
                    "driver": "fsspec",
                    "url": (pools_dir / "obj").as_uri(),
                    "capacity_gb": 50,
                },
            ]
        }
    )


@pytest.fixture
def session(db_url: str, inventory_yaml: str) -> Iterator[Session]:
    """A session on a DB holding the three test pools and the default share type."""
    with session_scope(db_url) as s:
        sync_inventory(s, parse_inventory(inventory_yaml))
        ensure_default_share_type(s)
    with session_scope(db_url) as s:
        yield s

"""Fixtures for storage tests: a real SQLite file with the schema, real pool directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy.orm import Session

from storage.catalog import ensure_default_share_type
from storage.db import session_scope, upgrade
from storage.inventory import parse_inventory, sync_inventory


@pytest.fixture
def db_url(sharemig_home: Path) -> str:
    from storage.settings import get_settings

    url = get_settings().db_url  # SQLite under sharemig_home, or PostgreSQL in that CI step
    upgrade(url)
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

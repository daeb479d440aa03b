"""Getting a data directory ready: schema upgrade, demo inventory if none, inventory sync."""

from __future__ import annotations

from pathlib import Path

import yaml

from storage.catalog import ensure_default_share_type
from storage.db import session_scope, upgrade
from storage.inventory import load_inventory, sync_inventory
from storage.settings import Settings, get_settings


def demo_inventory(home: Path) -> dict[str, object]:
    """Two `localfs` pools on one backend (driver-assisted applies) and one generic fsspec pool."""
    root = home / "pools"
    return {
        "pools": [
            {
                "name": "sharemig@localfs#pool-a",
                "driver": "localfs",
                "url": (root / "pool-a").as_uri(),
                "capacity_gb": 100,
            },
            {
                "name": "sharemig@localfs#pool-b",
                "driver": "localfs",
                "url": (root / "pool-b").as_uri(),
                "capacity_gb": 100,
            },
            {
                "name": "sharemig@objects#bucket",
                "driver": "fsspec",
                "url": (root / "objects").as_uri(),
                "capacity_gb": 200,
            },
        ]
    }


def write_demo_inventory(settings: Settings) -> bool:
    """Write the demo inventory unless one exists; True when it wrote one."""
    path = settings.pools_path
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    inv = demo_inventory(settings.home)
    for pool in inv["pools"]:  # type: ignore[attr-defined]
        Path(pool["url"].removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    header = (
        "# sharemig pool inventory: name (host@backend#pool), driver, fsspec url, capacity_gb\n"
    )
    path.write_text(header + yaml.safe_dump(inv, sort_keys=False), encoding="utf-8")
    return True


def prepare_database(*, write_demo: bool = True) -> list[str]:
    """Upgrade the schema and sync the inventory into it; returns the pool names."""
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    if write_demo:
        write_demo_inventory(settings)
    upgrade()
    inventory = load_inventory(settings.pools_path)
    with session_scope() as session:
        names = sync_inventory(session, inventory)
        ensure_default_share_type(session)
    return names

"""pools.yaml parsing: good files sync into the DB, bad ones name the line and the field."""

from __future__ import annotations

import textwrap

import pytest
from sqlalchemy.orm import Session

from storage.errors import InventoryError
from storage.inventory import parse_inventory, sync_inventory
from storage.models import Pool


def test_sync_upserts_and_disables_removed_pools(session: Session, inventory_yaml: str) -> None:
    assert {p.name for p in session.query(Pool)} == {"h1@lfs#a", "h1@lfs#b", "h2@obj#bucket"}
    a = session.get(Pool, "h1@lfs#a")
    assert a is not None and (a.host, a.backend, a.pool, a.service) == ("h1", "lfs", "a", "h1@lfs")
    smaller = textwrap.dedent(
        f"""
        pools:
          - name: "h1@lfs#a"
            driver: localfs
            url: {a.url}
            capacity_gb: 99
        """
    )
    sync_inventory(session, parse_inventory(smaller))
    a2 = session.get(Pool, "h1@lfs#a")
    b = session.get(Pool, "h1@lfs#b")
    assert a2 is not None and a2.capacity_gb == 99 and a2.enabled
    assert b is not None and not b.enabled


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "pools:\n  - name: h@b#p\n    driver: localfs\n    url: file:///x\n"
            "    capacity_gb: 1\n  - name: nohost\n    driver: localfs\n"
            "    url: file:///y\n    capacity_gb: 1\n",
            "pools.yaml:6: pools[1].name: Value error, host 'nohost' is not of the form",
        ),
        (
            "pools:\n  - name: h@b#p\n    driver: localfs\n    url: file:///x\n"
            "    capacity_gb: -3\n",
            "pools.yaml:5: pools[0].capacity_gb: Input should be greater than 0",
        ),
        (
            "pools:\n  - name: h@b#p\n    driver: nfs9\n    url: file:///x\n    capacity_gb: 3\n",
            "pools.yaml:3: pools[0].driver: Value error, unknown driver 'nfs9'",
        ),
        (
            "pools:\n  - name: h@b#p\n    driver: localfs\n    capacity_gb: 3\n",
            "pools.yaml:2: pools[0].url: Field required",
        ),
        (
            "pools:\n  - name: h@b#p\n    driver: localfs\n    url: file:///x\n"
            "    capacity_gb: 3\n    colour: red\n",
            "pools.yaml:6: pools[0].colour: Extra inputs are not permitted",
        ),
        ("pools: [\n  - broken", "pools.yaml:2: not valid YAML"),
        (
            "pools:\n  - name: h@b\n    driver: localfs\n    url: /x\n    capacity_gb: 1\n",
            "names no pool",
        ),
    ],
)
def test_bad_inventory_names_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text)
    assert expected in str(info.value)


def test_duplicate_pool_names_are_refused() -> None:
    entry = "  - name: h@b#p\n    driver: localfs\n    url: file:///x\n    capacity_gb: 1\n"
    with pytest.raises(InventoryError, match="repeated: h@b#p"):
        parse_inventory("pools:\n" + entry + entry)


_POOL = "pools:\n  - name: h@b#p\n    driver: localfs\n    url: file:///x\n    capacity_gb: 3\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("max_concurrent_migrations: 0", "pools.yaml:6: pools[0].max_concurrent_migrations: "),
        ("max_concurrent_migrations: -2", "Input should be greater than 0"),
        ("max_concurrent_migrations: 1.5", "pools.yaml:6: pools[0].max_concurrent_migrations"),
        ('max_concurrent_migrations: "2"', "Input should be a valid integer"),
        ("max_concurrent_migrations: yes", "Input should be a valid integer"),
        ("bandwidth_limit_bytes: 0", "pools.yaml:6: pools[0].bandwidth_limit_bytes: "),
    ],
)
def test_pool_limits_must_be_positive_integers(line: str, expected: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(_POOL + f"    {line}\n")
    assert expected in str(info.value)


def test_pool_limits_sync_into_the_database(session: Session) -> None:
    text = _POOL + "    max_concurrent_migrations: 1\n    bandwidth_limit_bytes: 500000\n"
    sync_inventory(session, parse_inventory(text))
    pool = session.get(Pool, "h@b#p")
    assert pool is not None
    assert (pool.max_concurrent_migrations, pool.bandwidth_limit_bytes) == (1, 500000)

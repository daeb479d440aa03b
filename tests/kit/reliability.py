"""Helpers for the reliability suites: their pools, the scenario ledger, small trees, content
digests, and a migration driven step by step through `storage` exactly as the flow composes them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import xxhash

from tests.kit import shares
from tests.kit.manila_api import NOTHING_PRESERVED
from tests.kit.shares import local_path

POOL_A = "rel@localfs#a"
POOL_B = "rel@localfs#b"
POOL_TINY = "rel@localfs#tiny"
POOL_FAULTY_SRC = "rel@faulty#src"
POOL_FAULTY_DST = "rel@faulty#dst"


LEDGER_ENV = "SHAREMIG_RELIABILITY_LEDGER"
LEDGER: list[dict[str, Any]] = []


def record(scenario: str, outcome: str, lost: int) -> None:
    """One run of a scenario: how it ended and how many bytes were lost (must be 0)."""
    LEDGER.append({"scenario": scenario, "outcome": outcome, "bytes_lost": lost})
    path = os.environ.get(LEDGER_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(LEDGER[-1]) + "\n")


Content = dict[str, tuple[str, int]]
"""{relative path: (xxh3_128, size)} of the regular files of a tree."""


def make_tree(root: Path, files: int = 40, size: int = 96 * 1024) -> Content:
    """`files` files of distinct content in two levels; returns what was written."""
    for i in range(files):
        path = root / f"d{i % 4}" / f"f{i:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((f"{i}:".encode() * (size // 4 + 1))[: size + i])
    return content(root)


def content(root: Path) -> Content:
    found = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found[str(path.relative_to(root))] = (xxhash.xxh3_128_hexdigest(data), len(data))
    return found


def bytes_lost(expected: Content, *roots: Path) -> int:
    """Bytes of `expected` whose exact content survives under none of `roots` (must be 0)."""
    present: set[tuple[str, str]] = set()
    for root in roots:
        if root.exists():
            present.update((rel, digest) for rel, (digest, _) in content(root).items())
    return sum(size for rel, (digest, size) in expected.items() if (rel, digest) not in present)


def new_share(pool: str, size: int = 1) -> tuple[str, Path]:
    """A share of project `rel` on `pool`, of a type without snapshots; (id, its data dir)."""
    share = shares.new_share(pool, project="rel", size=size, name=None, snapshots=False)
    return share.share_id, share.path


def start(share_id: str, dest: str) -> str:
    """Admit a forced host-assisted migration (what `migration_start` does before the run)."""
    from storage.db import session_scope
    from storage.migration_admission import StartRequest, admit_start

    req = StartRequest(host=dest, **NOTHING_PRESERVED, force_host_assisted_migration=True)
    with session_scope() as s:
        mig = admit_start(s, share_id, req, project_id=None)
        assert mig is not None
        return mig.id


def _with_retries(fn: object, *args: object, **kwargs: object) -> object:
    """Three tries for `TransientError`, as the tasks' retry policy does."""
    from storage.errors import TransientError

    for attempt in range(3):
        try:
            return fn(*args, **kwargs)  # type: ignore[operator]
        except TransientError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def drive_host_migration(migration_id: str, *, approve: bool = True) -> str:
    """Phase 1, decision, switchover: the steps `migrate_share` runs, without Prefect.

    Ends like the flow: `migration_success`, `migration_cancelled` or `migration_error`.
    """
    from storage import migration_copy as copy
    from storage import migration_endings as endings
    from storage import migration_lifecycle as life
    from storage.errors import SharemigError

    try:
        life.begin(migration_id, None)
        _with_retries(life.reserve_destination, migration_id)
        _with_retries(life.choose_path, migration_id)
        _with_retries(copy.host_copy_round, migration_id)
        _with_retries(copy.host_finish, migration_id)
        if not approve:
            return endings.abort(migration_id, "migration_cancelled", "rejected")
        life.take_decision(migration_id, True, None)
        _with_retries(copy.host_copy_round, migration_id, final_sync=True, stoppable=False)
        _with_retries(copy.host_finish, migration_id, final_sync=True)
        copy.require_complete(migration_id)
        endings.switch_to_destination(migration_id)
        endings.delete_source(migration_id)
        endings.finish_success(migration_id)
        return "migration_success"
    except SharemigError as exc:
        return endings.abort(migration_id, "migration_error", str(exc))


def instance_dirs(share_id: str) -> list[Path]:
    """Data directories of every instance the share has now."""
    from storage.db import session_scope
    from storage.pools import driver_for
    from storage.shares import instances

    with session_scope() as s:
        return [
            local_path(driver_for(s, i.pool_name).instance_url(i.location))
            for i in instances(s, share_id)
        ]

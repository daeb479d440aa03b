"""Helpers for the reliability suites: small trees, content digests, a fresh PostgreSQL DB,
and a migration driven step by step through `storage` exactly as the flow composes them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash

BENCH_KIT = Path(
    os.environ.get("SHAREMIG_BENCH_KIT", Path(__file__).resolve().parents[3] / "shared" / "bench")
)


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


def gen_tree(target: Path, preset: str = "small") -> None:
    script = BENCH_KIT / "gen_dataset.py"
    if not script.is_file():
        pytest.skip(f"{script} not found (set SHAREMIG_BENCH_KIT to the bench kit directory)")
    subprocess.run(
        [sys.executable, str(script), str(target), "--preset", preset],
        check=True,
        capture_output=True,
    )


def treecmp(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH_KIT / "treecmp.py"), str(a), str(b)],
        capture_output=True,
        text=True,
    )


def new_share(pool: str, size: int = 1) -> tuple[str, Path]:
    """A share on `pool` (default type, no snapshots needed); returns (id, its data dir)."""
    from storage.catalog import create_share_type, get_share_type
    from storage.db import session_scope
    from storage.errors import NotFoundError
    from storage.pools import driver_for
    from storage.shares import active_instance, create_share

    with session_scope() as s:
        try:
            type_id = get_share_type(s, "plain").id
        except NotFoundError:
            type_id = create_share_type(s, "plain", {"driver_handles_share_servers": "False"}).id
        share = create_share(s, project_id="rel", size=size, host=pool, share_type_id=type_id)
        url = driver_for(s, pool).instance_url(active_instance(s, share).location)
        return share.id, local_path(url)


def local_path(url: str) -> Path:
    """The directory behind a local or `faulty://` instance URL."""
    return Path("/" + url.split("://")[-1].lstrip("/"))


def start(share_id: str, dest: str) -> str:
    """Admit a forced host-assisted migration (what `migration_start` does before the run)."""
    from storage.db import session_scope
    from storage.migration_admission import StartRequest, admit_start

    req = StartRequest(
        host=dest,
        preserve_metadata=False,
        preserve_snapshots=False,
        writable=False,
        nondisruptive=False,
        force_host_assisted_migration=True,
    )
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

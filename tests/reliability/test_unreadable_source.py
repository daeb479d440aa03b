"""Source entries the mover may not read, with the mover running as a non-root user (as a
service account would): mode-000 files and directories end phase 1 in `migration_error`,
counted and named, never a switchover onto a copy that lacks them. Source intact,
destination copy removed.

The whole migration (`drive_host_migration`, the steps the flow composes) runs in a child
process under `setpriv --reuid nobody`; the test sets up and checks as root. Its world lives
under /var/tmp (pytest's own temp dir is 0700, closed to another user).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.kit.paths import REPO
from tests.kit.reliability import (
    bytes_lost,
    content,
    instance_dirs,
    make_tree,
    new_share,
    record,
    start,
)

NOBODY = 65534
SRC_POOL, DST_POOL = "rel@localfs#a", "rel@localfs#b"
CHILD = """
import sys
sys.path[:0] = [sys.argv[2]]
from tests.kit.reliability import drive_host_migration
print(drive_host_migration(sys.argv[1]))
"""


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data dir and two localfs pools that user nobody may write; SHAREMIG_HOME points at it."""
    from storage.catalog import ensure_default_share_type
    from storage.db import dispose_engines, session_scope, upgrade
    from storage.inventory import parse_inventory, sync_inventory
    from storage.settings import get_settings, reset_settings

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run the mover as another user")
    root = Path(tempfile.mkdtemp(prefix="sharemig-nonroot-", dir="/var/tmp"))
    root.chmod(0o755)
    home = root / "home"
    entries = []
    for name in (SRC_POOL, DST_POOL):
        pool = root / "pools" / name.rsplit("#", 1)[1]
        pool.mkdir(parents=True)
        entries.append({"name": name, "driver": "localfs", "url": pool.as_uri(), "capacity_gb": 9})
    monkeypatch.setenv("SHAREMIG_HOME", str(home))
    monkeypatch.delenv("SHAREMIG_DATABASE_URL", raising=False)
    reset_settings()
    url = get_settings().db_url
    if not url.startswith("sqlite"):
        pytest.skip("this test's child process uses the SQLite file of its data dir")
    home.mkdir()
    upgrade(url)
    with session_scope() as s:
        sync_inventory(s, parse_inventory(yaml.safe_dump({"pools": entries})))
        ensure_default_share_type(s)
    try:
        yield root
    finally:
        dispose_engines()
        reset_settings()
        subprocess.run(["chmod", "-R", "u+rwX", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def _as_nobody(root: Path, migration_id: str) -> str:
    """Hand the data dir and the share's tree to nobody (bar what the test locked), run the
    migration as nobody; returns how it ended."""
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(root / "home")], check=True)
    for pool in (root / "pools").iterdir():
        os.chown(pool, NOBODY, NOBODY)
    env = {**os.environ, "SHAREMIG_HOME": str(root / "home"), "HOME": str(root)}
    env.pop("SHAREMIG_DATABASE_URL", None)
    done = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "--",
            sys.executable,
            "-c",
            CHILD,
            migration_id,
            str(REPO),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def _share_state(share_id: str) -> tuple[str, str | None, str]:
    from storage.db import session_scope
    from storage.shares import get_share

    with session_scope() as s:
        share = get_share(s, share_id)
        return share.status, share.task_state, share.host


@pytest.mark.parametrize("what", ["file", "directory"])
def test_an_unreadable_source_entry_ends_in_migration_error_counted_and_named(
    world: Path, what: str
) -> None:
    from storage import migration_lifecycle as life

    share_id, src = new_share(SRC_POOL)
    expected = make_tree(src, files=12, size=8 * 1024)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(src)], check=True)
    if what == "file":
        locked = [src / "d1" / "f005.bin", src / "d2" / "f006.bin"]
    else:
        (src / "private").mkdir()
        (src / "private" / "secret.txt").write_bytes(b"not for the mover")
        expected = content(src)
        locked = [src / "private"]
    for path in locked:
        os.chown(path, 0, 0)
        path.chmod(0)
    mig = start(share_id, DST_POOL)

    outcome = _as_nobody(world, mig)

    for path in locked:
        path.chmod(0o700)
    lost = bytes_lost(expected, src)
    record(f"fault: unreadable source {what} (mover as nobody)", outcome, lost)
    error = life.status(mig).error or ""
    assert outcome == "migration_error", error
    if what == "file":
        assert "2 source file(s) could not be copied" in error, error
        assert "d1/f005.bin: unreadable by the mover (uid 65534): Permission denied" in error
        assert "d2/f006.bin" in error, error
    else:
        assert "1 source directory cannot be listed by the mover (uid 65534)" in error, error
        assert "private: Permission denied" in error, error
    assert "would not be migrated" in error, error
    assert content(src) == expected, "the source must be untouched"
    assert instance_dirs(share_id) == [src], "the destination instance must be gone"
    assert [p for p in (world / "pools" / "b").rglob("*") if not p.is_dir()] == []
    assert _share_state(share_id) == ("available", "migration_error", SRC_POOL)

"""Rollback without Prefect: the seeded manifest copies back only what changed, and a
rollback that cannot run is refused with the reason and changes nothing."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.errors import RollbackRefusedError
from storage.models import ManifestEntry, Migration, Share, ShareInstance
from storage.models.base import utcnow
from storage.mover import run_copy
from storage.rollback import admit_rollback, seed_manifest
from tests.kit.bench_kit import treecmp


def _tree(root: Path) -> None:
    (root / "d" / "sub").mkdir(parents=True)
    for i in range(30):
        (root / "d" / f"f{i:02d}").write_bytes(bytes([i]) * (1000 + i))
    (root / "d" / "sub" / "deep.txt").write_text("deep\n")
    os.symlink("d/f00", root / "link")


def test_seeded_rollback_copies_only_changes(tmp_path: Path, db_url: str) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    _tree(old)
    subprocess.run(["cp", "-a", f"{old}/.", str(new)], check=True)
    (new / "d" / "f03").write_bytes(b"changed")
    (new / "d" / "f04").unlink()
    (new / "d" / "sub" / "added.txt").write_text("added\n")
    os.chmod(new / "d" / "f05", 0o600)

    assert seed_manifest("rb-1", str(new), str(old), db_url=db_url)
    assert not seed_manifest("rb-1", str(new), str(old), db_url=db_url)  # idempotent
    summary = run_copy(str(new), str(old), job_id="rb-1", db_url=db_url)
    assert summary.complete
    # Only the changed, the new and the chmod-ed file are copied (a mode change counts as a
    # change), of 32 files; the deleted one is removed.
    assert (summary.files_copied, summary.bytes_copied) == (3, 7 + 6 + 1005), summary
    assert summary.removed == 1
    cmp = treecmp(new, old)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr


def _switched_share(session: Session, retained_until_s: float) -> tuple[Share, ShareInstance]:
    """A share that moved from pool a to pool b with its old instance retained."""
    from storage.shares import active_instance, create_instance, create_share

    share = create_share(session, project_id="p", size=1, host="h1@lfs#a", name="s")
    old = active_instance(session, share)
    new = create_instance(
        session,
        share,
        "h1@lfs#b",
        status="available",
        share_type_id=share.share_type_id,
        share_network_id=None,
    )
    old.status = "retained"
    old.retained_until = utcnow() + timedelta(seconds=retained_until_s)
    share.host = "h1@lfs#b"
    session.add(
        Migration(
            share_id=share.id,
            source_instance_id=old.id,
            dest_instance_id=new.id,
            dest_host="h1@lfs#b",
            active=False,
            outcome="migration_success",
        )
    )
    share.task_state = "migration_success"
    session.flush()
    return share, old


def _snapshot(session: Session, share_id: str) -> list[tuple[str, str, str | None]]:
    share = session.get(Share, share_id)
    assert share is not None
    rows = session.scalars(select(ShareInstance).where(ShareInstance.share_id == share_id))
    return [(share.status, share.task_state or "", share.host)] + [
        (i.pool_name, i.status, None) for i in rows
    ]


def test_rollback_within_the_window_starts_a_reverse_migration(session: Session) -> None:
    share, old = _switched_share(session, 3600)
    mig = admit_rollback(session, share.id)
    assert (mig.dest_host, mig.dest_instance_id, mig.mechanism) == ("h1@lfs#a", old.id, "host")
    assert mig.rollback_of is not None and mig.retain_source_s == 0
    assert (share.status, share.task_state) == ("migrating", "migration_starting")
    assert old.status == "migrating_to"


@pytest.mark.parametrize(
    ("window_s", "prepare", "why"),
    [
        (-5, None, "rollback window of share"),
        (3600, "no-retained", "has no retained instance"),
        (3600, "busy", "another migration of it is running"),
        (3600, "moved-again", "moved again after the switchover"),
    ],
)
def test_rollback_refused_changes_nothing(
    session: Session, window_s: float, prepare: str | None, why: str
) -> None:
    share, old = _switched_share(session, window_s)
    if prepare == "no-retained":
        old.status = "available"
        share.host = "h1@lfs#a"
        session.delete(old)
    elif prepare == "busy":
        share.status, share.task_state = "migrating", "data_copying_in_progress"
    elif prepare == "moved-again":
        newest = session.scalar(select(Migration).where(Migration.share_id == share.id))
        assert newest is not None
        newest.dest_instance_id = "elsewhere"
    session.flush()
    before = _snapshot(session, share.id)
    with pytest.raises(RollbackRefusedError, match=why):
        admit_rollback(session, share.id)
    assert _snapshot(session, share.id) == before
    assert session.scalar(select(ManifestEntry.id).limit(1)) is None

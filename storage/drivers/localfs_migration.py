"""Driver-assisted migration between two localfs pools.

Same filesystem: phase 1 does nothing and the switchover is a rename of the instance and of its
snapshot directory, O(1) whatever the size. Different filesystems: phase 1 is the data mover's
verified local copy of the instance and its snapshots while the source stays writable; the
switchover freezes the source, re-runs the same copy job (incremental) and switches.

The freeze is a read-only bind mount over the source (`storage.source_freeze`), recorded in the
journal (`frozen_at_ns`). It cannot revoke a descriptor opened for writing before it, so the
final sync repeats until one pass finds nothing changed and fails the switchover if the source
is still being written after that; the source is never touched, so such a failure leaves it
intact.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from storage import source_freeze
from storage.drivers.base import Compatibility, MigrationRef, PoolRef, StopCheck
from storage.drivers.localfs_journal import (
    Journal,
    journal_lock,
    read_journal,
    remove_journal,
    updating_journal,
    write_journal,
)
from storage.drivers.localfs_paths import pool_root, safe_child, same_driver_root, snapshots_dir
from storage.drivers.localfs_sync import copy_tree, forget_jobs, jobs_progress
from storage.errors import (
    FreezeUnavailableError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    PermanentError,
)

JOURNAL_DIR = ".migrations"
FINAL_SYNC_PASSES = 3
_JOB_NAMESPACE = uuid.UUID("6f1d2c1e-8f3b-4c55-9a4e-5d0b7f6a2c11")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sides:
    """The paths one migration touches."""

    src: Path
    dst: Path
    src_snaps: Path
    dst_snaps: Path
    journal: Path


def sides(source_root: Path, ref: MigrationRef) -> Sides:
    dest_root = pool_root(ref.dest_pool)
    return Sides(
        src=safe_child(source_root, ref.source_location),
        dst=safe_child(dest_root, ref.dest_location),
        src_snaps=snapshots_dir(source_root, ref.source_location),
        dst_snaps=snapshots_dir(dest_root, ref.dest_location),
        journal=safe_child(source_root / JOURNAL_DIR, ref.source_location)
        / f"{ref.migration_id}.json",
    )


def job_id(migration_id: str, part: str) -> str:
    """Deterministic copy-job id, so a re-run resumes the same manifest."""
    return str(uuid.uuid5(_JOB_NAMESPACE, f"{migration_id}/{part}"))


def _job_ids(journal: Journal) -> list[str]:
    mid = journal.migration_id
    return [job_id(mid, "instance")] + [
        job_id(mid, f"snapshot/{sid}") for sid in journal.snapshot_ids
    ]


def _dev(path: Path) -> int:
    return os.stat(path).st_dev


def _xattrs_supported(root: Path) -> bool:
    """Can the destination hold user xattrs? Probed on a throwaway file."""
    probe = root / f".sharemig-xattr-probe-{uuid.uuid4().hex}"
    try:
        probe.touch()
        os.setxattr(probe, b"user.sharemig", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)


def check_compatibility(source_root: Path, source_location: str, dest: PoolRef) -> Compatibility:
    try:
        dest_root = same_driver_root(dest, "localfs")
    except InvalidInputError as exc:
        return Compatibility(False, reason=str(exc))
    src = safe_child(source_root, source_location)
    if not src.is_dir():
        return Compatibility(False, reason=f"source instance data {src} is missing")
    if not dest_root.is_dir():
        return Compatibility(False, reason=f"destination pool directory {dest_root} is missing")
    if _dev(src) == _dev(dest_root):
        return Compatibility(
            True,
            writable=True,
            nondisruptive=False,
            preserve_metadata=True,
            preserve_snapshots=True,
            reason="same filesystem: the switchover is one rename",
        )
    # A copy keeps ownership only as root and xattrs only where the destination holds them.
    keeps_owner = os.geteuid() == 0
    keeps_xattrs = _xattrs_supported(dest_root)
    lost = [
        what for what, kept in (("ownership", keeps_owner), ("xattrs", keeps_xattrs)) if not kept
    ]
    why = "different filesystems: verified copy, source writable, final sync at switchover"
    if lost:
        why += f"; cannot keep {' and '.join(lost)} on {dest_root}"
    return Compatibility(
        True,
        writable=True,
        nondisruptive=False,
        preserve_metadata=not lost,
        preserve_snapshots=True,
        reason=why,
    )


def start(source_root: Path, ref: MigrationRef) -> None:
    s = sides(source_root, ref)
    if read_journal(s.journal) is not None:
        return
    # Checks first, so a refused start leaves nothing behind (not even a lock file).
    if not s.src.is_dir():
        raise NotFoundError(f"source instance data {s.src} is missing")
    on_disk = sorted(p.name for p in s.src_snaps.iterdir()) if s.src_snaps.is_dir() else []
    on_disk = [n for n in on_disk if not n.endswith(".partial")]
    missing = sorted(set(ref.snapshot_ids) - set(on_disk))
    if missing:
        raise NotFoundError(f"snapshot data missing beside {s.src}: {', '.join(missing)}")
    preexisted = s.dst.exists()
    if preexisted and any(os.scandir(s.dst)):
        raise InvalidStateError(f"destination {s.dst} is not empty; refusing to merge into it")
    if s.dst_snaps.exists() and any(os.scandir(s.dst_snaps)):
        raise InvalidStateError(f"destination snapshot directory {s.dst_snaps} is not empty")
    s.dst.parent.mkdir(parents=True, exist_ok=True)
    same_fs = _dev(s.src) == _dev(s.dst.parent)
    if same_fs and s.src_snaps.is_dir():
        s.dst_snaps.parent.mkdir(parents=True, exist_ok=True)
        same_fs = _dev(s.src_snaps) == _dev(s.dst_snaps.parent)
    journal = Journal(
        migration_id=ref.migration_id,
        mode="rename" if same_fs else "copy",
        dest_preexisted=preexisted,
        snapshot_ids=on_disk,
    )
    with journal_lock(s.journal):
        if read_journal(s.journal) is None:
            write_journal(s.journal, journal)


def _journal(s: Sides) -> Journal:
    journal = read_journal(s.journal)
    if journal is None:
        raise InvalidStateError(f"driver migration was not started (no journal at {s.journal})")
    return journal


def continue_(
    source_root: Path, ref: MigrationRef, should_stop: StopCheck | None, db_url: str | None
) -> bool:
    """Phase 1: nothing to do for a rename; the mover's resumable verified copy otherwise."""
    s = sides(source_root, ref)
    journal = _journal(s)
    if journal.state != "started":
        return True
    if journal.mode == "copy":
        copy_tree(
            s.src,
            s.dst,
            job_id(ref.migration_id, "instance"),
            db_url,
            should_stop,
            migration_id=ref.migration_id,
        )
        for sid in journal.snapshot_ids:
            copy_tree(
                s.src_snaps / sid,
                s.dst_snaps / sid,
                job_id(ref.migration_id, f"snapshot/{sid}"),
                db_url,
                should_stop,
                migration_id=ref.migration_id,
            )
    with updating_journal(s.journal) as j:
        if j.state == "started":
            j.state = "phase1_done"
    return True


def _rename(src: Path, dst: Path) -> None:
    """Move `src` onto `dst` (absent or an empty directory) in one step, or say why not."""
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            raise PermanentError(f"{src} and {dst} are on different filesystems now") from None
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise InvalidStateError(
                f"destination {dst} is not empty; refusing to replace it"
            ) from None
        raise PermanentError(f"cannot move {src} to {dst}: {exc.strerror}") from None


def _switch_by_rename(s: Sides) -> None:
    with updating_journal(s.journal) as j:
        j.state = "switching"
    if s.src.exists():
        _rename(s.src, s.dst)
    elif not s.dst.is_dir():
        raise PermanentError(f"instance data is neither at {s.src} nor at {s.dst}")
    if s.src_snaps.exists():
        s.dst_snaps.parent.mkdir(parents=True, exist_ok=True)
        _rename(s.src_snaps, s.dst_snaps)


def _final_sync(
    s: Sides, ref: MigrationRef, should_stop: StopCheck | None, db_url: str | None
) -> None:
    # The same freeze as a host-assisted source: a read-only bind mount, lifted when the
    # caller deletes the source after the switch, or by cancel.
    try:
        source_freeze.freeze_dir(s.src)
    except FreezeUnavailableError as exc:
        log.warning("driver-assisted switchover without a freeze of %s: %s", s.src, exc)
    with updating_journal(s.journal) as j:
        j.state = "frozen"
        j.frozen_at_ns = j.frozen_at_ns or time.time_ns()
    jid = job_id(ref.migration_id, "instance")
    # The first pass copies what changed since phase 1; a pass that copies nothing proves the
    # destination equals the frozen source.
    for _ in range(FINAL_SYNC_PASSES):
        if copy_tree(s.src, s.dst, jid, db_url, should_stop, migration_id=ref.migration_id):
            return
    raise PermanentError(
        f"the source {s.src} kept changing after it was frozen ({FINAL_SYNC_PASSES} sync "
        "passes); stop the writers (a local process bypasses the read-only export) and retry"
    )


def complete(
    source_root: Path, ref: MigrationRef, should_stop: StopCheck | None, db_url: str | None
) -> None:
    s = sides(source_root, ref)
    journal = _journal(s)
    if journal.state == "switched":
        return
    if journal.state == "started":
        raise InvalidStateError("phase 1 of the driver migration is not done yet")
    if journal.mode == "rename":
        _switch_by_rename(s)
    else:
        _final_sync(s, ref, should_stop, db_url)
    with updating_journal(s.journal) as j:
        j.state = "switched"
        j.progress = 100


def _undo_rename(s: Sides) -> None:
    """Cancel during a half-done rename switchover: put the data back where it was."""
    if not s.src.exists() and s.dst.is_dir():
        os.rename(s.dst, s.src)
    if not s.src_snaps.exists() and s.dst_snaps.is_dir():
        os.rename(s.dst_snaps, s.src_snaps)


def _remove_copies(s: Sides, journal: Journal) -> None:
    shutil.rmtree(s.dst, ignore_errors=True)
    if journal.dest_preexisted:
        s.dst.mkdir(exist_ok=True)
    for sid in journal.snapshot_ids:
        shutil.rmtree(s.dst_snaps / sid, ignore_errors=True)
    with contextlib.suppress(OSError):  # absent, or holds snapshots that are not ours
        s.dst_snaps.rmdir()


def cancel(source_root: Path, ref: MigrationRef, db_url: str | None) -> None:
    """Undo what this migration created; idempotent. The caller stops phase 1 first."""
    s = sides(source_root, ref)
    if read_journal(s.journal) is None:
        return  # never started, or already cancelled: leave no lock file behind either
    with journal_lock(s.journal):
        journal = read_journal(s.journal)
        if journal is None:
            return
        if journal.state == "switched":
            raise InvalidStateError(
                f"migration {ref.migration_id} already switched over; the data lives at {s.dst}"
            )
        source_freeze.lift_dir(s.src)
        if journal.mode == "rename":
            _undo_rename(s)
        else:
            _remove_copies(s, journal)
            forget_jobs(_job_ids(journal), db_url)
    remove_journal(s.journal)


def progress(source_root: Path, ref: MigrationRef, db_url: str | None) -> dict[str, object]:
    s = sides(source_root, ref)
    if read_journal(s.journal) is None:
        return {"total_progress": 0, "state": "not_started"}
    with journal_lock(s.journal):
        journal = read_journal(s.journal)
        if journal is None:
            return {"total_progress": 0, "state": "not_started"}
        extras: dict[str, object] = {"mode": journal.mode, "state": journal.state}
        if journal.state != "started":
            now = 100
        elif journal.mode == "rename":
            now = 0
        else:
            counts = jobs_progress(_job_ids(journal), db_url)
            extras.update(asdict(counts))
            # Until every job has finished, stay below 100: 100 means phase 1 is done.
            now = min(99, counts.percent)
        if now > journal.progress:
            journal.progress = now
            write_journal(s.journal, journal)
        return {"total_progress": journal.progress, **extras}

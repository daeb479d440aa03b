"""The localfs driver's use of the data mover: resumable verified local copies, their progress.

The driver never copies by itself; every byte it moves goes through `storage.mover`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from storage.drivers.base import StopCheck
from storage.errors import DataIntegrityError, NotFoundError, PermanentError


def copy_tree(
    src: Path,
    dst: Path,
    job_id: str,
    db_url: str | None,
    should_stop: StopCheck | None,
    *,
    migration_id: str | None = None,
) -> bool:
    """Copy (or resume, or re-sync) `src` into `dst` with the mover; True if `dst` now equals
    `src` as walked by this pass (nothing had to be copied or removed, nothing changed under it).

    The same `job_id` makes a re-run incremental: changed files are copied again, vanished
    ones removed, verified ones skipped. Files that change while being copied are fine here
    (the source is writable in phase 1); files that do not verify are an error.
    """
    from storage.mover import run_copy
    from storage.pool_limits import migration_budget

    # The pools' shared bandwidth budgets apply to a driver's copy as to the host's.
    budget = migration_budget(migration_id, db_url=db_url) if migration_id else ()
    summary = run_copy(
        str(src), str(dst), job_id=job_id, db_url=db_url, should_stop=should_stop, budget=budget
    )
    if summary.failed:
        names = ", ".join(summary.failed[:5])
        raise DataIntegrityError(f"copy {src} -> {dst} did not verify: {names}")
    untouched = not (summary.files_copied or summary.removed or summary.changed)
    return untouched and summary.complete


def snapshot_tree(src: Path, dst: Path) -> None:
    """A full-fidelity point-in-time copy of an instance into `dst` (absent beforehand).

    A snapshot is a copy within one pool, so `cp -a --reflink=auto` fits better than the
    mover: it shares blocks copy-on-write where the filesystem can (XFS, Btrfs), keeps every
    attribute the mover keeps (hard links, xattrs, ACLs, sparse files, ns times, FIFOs as
    FIFOs), and needs no manifest in the database for what is a same-filesystem clone.
    """
    proc = subprocess.run(
        ["cp", "-a", "--reflink=auto", "--", f"{src}/.", str(dst)],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        shutil.rmtree(dst, ignore_errors=True)
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise PermanentError(f"snapshot of {src} failed: {'; '.join(err[:3])}")


def allocated_bytes(root: Path) -> int:
    """What `du -s` counts under `root`: allocated blocks, each hard-linked inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except FileNotFoundError:
            continue
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return total


@dataclass
class JobsProgress:
    """Counters summed over a migration's copy jobs (instance and snapshots)."""

    files_planned: int = 0
    bytes_planned: int = 0
    files_verified: int = 0
    bytes_verified: int = 0
    entries_planned: int = 0
    entries_done: int = 0

    @property
    def percent(self) -> int:
        """The one progress formula over the sum; below 100 (the caller knows when it's done)."""
        from storage.progress import weighted_percent

        return weighted_percent(
            bytes_done=self.bytes_verified,
            bytes_total=self.bytes_planned,
            entries_done=self.entries_done,
            entries_total=self.entries_planned,
        )


def jobs_progress(job_ids: list[str], db_url: str | None) -> JobsProgress:
    """Counters summed over the copy jobs planned so far (an unplanned job counts nothing)."""
    from storage.mover import job_progress

    total = JobsProgress()
    for jid in job_ids:
        try:
            p = job_progress(jid, db_url=db_url)
        except NotFoundError:
            continue
        for name in (
            "files_planned",
            "bytes_planned",
            "files_verified",
            "bytes_verified",
            "entries_planned",
            "entries_done",
        ):
            setattr(total, name, getattr(total, name) + getattr(p, name))
    return total


def forget_jobs(job_ids: list[str], db_url: str | None) -> None:
    """Drop the copy jobs' manifests (cancel removes everything the migration created)."""
    from sqlalchemy import delete

    from storage.db import session_scope
    from storage.models import CopyJob

    with session_scope(db_url) as session:
        session.execute(delete(CopyJob).where(CopyJob.id.in_(job_ids)))

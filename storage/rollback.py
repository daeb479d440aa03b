"""`sharemig rollback`: move a share back onto the instance its last switchover retained.

A rollback is a host-assisted migration whose destination is the retained instance
(`storage.retention`). It copies back only what changed: before the first walk its manifest is
seeded with the retained instance's entries, and every entry the current instance still holds
unchanged (kind, size, mtime, mode, owner, link target) is marked done there, so the planner
queues the changed and new entries and removes the deleted ones (`plan_copy`'s incremental
diff). It keeps a migration's guarantees: the current instance is frozen while the copy runs,
every copied file is verified by content hash, the switchover gate checks the manifest. It is
approved in advance: the operator's command is the decision, so no approval wait.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import migration_state as state
from storage.catalog import get_share_type
from storage.db import session_scope
from storage.errors import RollbackRefusedError
from storage.migration_admission import StartRequest, begin_migration
from storage.models import Migration
from storage.models.base import aware, utcnow
from storage.models.manifest import CopyJob
from storage.mover.endpoints import open_endpoint
from storage.mover.plan import CHUNK, DONE, INSERT_ENTRY, T, path_key
from storage.mover.sql import executemany
from storage.mover.walk import FILE, WalkEntry, walk
from storage.retention import retained_instance
from storage.shares import active_instance, get_share

_SAME = ("kind", "mode", "uid", "gid", "link_target")
"""Compared for every entry; size and mtime for files (a directory's size and mtime are the
filesystem's and its children's business: its metadata is re-applied when they differ)."""


def admit_rollback(session: Session, share_id: str, *, project_id: str | None = None) -> Migration:
    """Check the rollback can run and start it: the new migration row, share `migrating`.

    Refused with `RollbackRefusedError` (nothing changed) when the share has no retained
    instance, its window has closed, or another migration of it runs."""
    share = get_share(session, share_id, project_id)
    if share.task_state in state.BUSY or share.status != "available":
        raise RollbackRefusedError(
            f"share {share.id} cannot be rolled back now: another migration of it is running "
            f"(status {share.status}, task_state {share.task_state}); wait for it to end or "
            "cancel it, then roll back"
        )
    retained = retained_instance(session, share.id)
    if retained is None:
        raise RollbackRefusedError(
            f"share {share.id} has no retained instance to roll back to: its last switchover "
            "ran with SHAREMIG_RETAIN_SOURCE_S=0, its window expired, or it was rolled back "
            "already (`sharemig shares` shows a retained instance while one exists)"
        )
    if retained.retained_until is not None and aware(retained.retained_until) <= utcnow():
        raise RollbackRefusedError(
            f"the rollback window of share {share.id} closed at "
            f"{aware(retained.retained_until).isoformat(timespec='seconds')}; its retained "
            f"instance on {retained.pool_name} is being deleted"
        )
    forward = session.scalar(
        select(Migration)
        .where(Migration.share_id == share.id, Migration.source_instance_id == retained.id)
        .order_by(Migration.created_at.desc())
        .limit(1)
    )
    current = active_instance(session, share)
    if forward is None or forward.dest_instance_id != current.id:
        raise RollbackRefusedError(
            f"share {share.id} moved again after the switchover that retained its instance "
            f"on {retained.pool_name}; only the last move can be rolled back"
        )
    req = StartRequest(
        host=retained.pool_name,
        preserve_metadata=False,
        preserve_snapshots=False,
        writable=False,
        nondisruptive=False,
        force_host_assisted_migration=True,
    )
    mig = begin_migration(
        session,
        share,
        req,
        get_share_type(session, retained.share_type_id),
        retained.share_network_id,
    )
    mig.dest_instance_id = retained.id
    mig.mechanism = "host"
    mig.rollback_of = forward.id
    mig.retain_source_s = 0  # the instance a rollback leaves is deleted: no rollback of it
    retained.status = "migrating_to"
    session.flush()
    return mig


def approved_in_advance(migration_id: str, *, db_url: str | None = None) -> bool:
    """A rollback needs no approval wait: the operator's command was the decision."""
    with session_scope(db_url) as s:
        mig = s.get(Migration, migration_id)
        return mig is not None and mig.rollback_of is not None


def _chunks(entries: Iterator[WalkEntry]) -> Iterator[list[WalkEntry]]:
    chunk: list[WalkEntry] = []
    for e in entries:
        chunk.append(e)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _unchanged(old: Any, new: WalkEntry) -> bool:
    if any(getattr(old, c) != getattr(new, c) for c in _SAME):
        return False
    return new.kind != FILE or (old.size == new.size and old.mtime_ns == new.mtime_ns)


def _row(job_id: str, e: WalkEntry) -> tuple[Any, ...]:
    return (
        job_id, e.path, path_key(e.path), e.kind, e.size, e.mtime_ns, e.ctime_ns, e.mode,
        e.uid, e.gid, e.blocks, e.rdev, e.link_target, None, 0, 0, DONE, 0,
    )  # fmt: skip


_ADOPT = (
    "UPDATE manifest_entries SET size = ?, mtime_ns = ?, ctime_ns = ?, blocks = ?, rdev = ? "
    "WHERE job_id = ? AND path_key = ?"
)


def seed_manifest(
    migration_id: str, current_url: str, retained_url: str, *, db_url: str | None = None
) -> bool:
    """Seed a rollback's manifest before its first walk; False when it exists already.

    Pass 1 records what the retained instance holds (done: it is there). Pass 2 walks the
    current instance and, where an entry is unchanged, takes its times so the planner's
    compare (which includes ctime) finds it unchanged. Both walks stream in chunks."""
    with session_scope(db_url) as s:
        if s.get(CopyJob, migration_id) is not None:
            return False
        s.add(CopyJob(id=migration_id, source_url=current_url, dest_url=retained_url))
    for chunk in _chunks(walk(open_endpoint(retained_url))):
        with session_scope(db_url) as s:
            executemany(s, INSERT_ENTRY, [_row(migration_id, e) for e in chunk])
    for chunk in _chunks(walk(open_endpoint(current_url))):
        keys = [path_key(e.path) for e in chunk]
        with session_scope(db_url) as s:
            cols = [T.c[c] for c in ("path_key", "size", "mtime_ns", *_SAME)]
            old = {
                r.path_key: r
                for r in s.execute(
                    select(*cols).where(T.c.job_id == migration_id, T.c.path_key.in_(keys))
                )
            }
            adopt: Sequence[tuple[Any, ...]] = [
                (e.size, e.mtime_ns, e.ctime_ns, e.blocks, e.rdev, migration_id, key)
                for e, key in zip(chunk, keys, strict=True)
                if key in old and _unchanged(old[key], e)
            ]
            executemany(s, _ADOPT, adopt)
    return True

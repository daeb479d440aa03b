"""Walk a source into manifest rows and batches; a re-plan is the incremental diff.

Rows are written in chunks (one short transaction each), so a million-entry tree never sits
in memory and concurrent writers wait milliseconds, not minutes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import xxhash
from sqlalchemy import Row, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from storage.db import session_scope
from storage.errors import NotFoundError
from storage.models.manifest import CopyJob, ManifestEntry
from storage.mover.endpoints import normalize_url, open_endpoint
from storage.mover.results import PlanSummary
from storage.mover.walk import FILE, HARDLINK, WalkEntry, walk
from storage.settings import get_settings

T = cast(Table, ManifestEntry.__table__)
J = cast(Table, CopyJob.__table__)
CHUNK = 2000
NO_BATCH = -1
"""Batch of entries `copy_batch` never handles: hard-link names, made by `finish_copy`."""

PLANNED, DONE, SKIPPED, FAILED, CHANGED, VANISHED = (
    "planned",
    "done",
    "skipped",
    "failed",
    "changed",
    "vanished",
)
_COMPARED = ("kind", "size", "mtime_ns", "ctime_ns", "mode", "uid", "gid", "link_target", "rdev")


def path_key(path: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(path)


def default_job_id(source_url: str, dest_url: str) -> str:
    """Same (source, destination) → same job, so running a copy again resumes it."""
    key = f"{normalize_url(source_url)}\0{normalize_url(dest_url)}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


@dataclass
class _Batcher:
    """Cuts work into batches by count and bytes; a big file gets a batch of its own."""

    max_files: int
    max_bytes: int
    next_batch: int
    count: int = 0
    size: int = 0

    def assign(self, size: int) -> int:
        if size > self.max_bytes // 8:
            self.next_batch += 1
            batch = self.next_batch
            self.next_batch += 1
            self.count = self.size = 0
            return batch
        if self.count >= self.max_files or (self.count and self.size + size > self.max_bytes):
            self.next_batch += 1
            self.count = self.size = 0
        self.count += 1
        self.size += size
        return self.next_batch

    @property
    def last(self) -> int:
        return self.next_batch if self.count else self.next_batch - 1


@dataclass
class _Totals:
    entries: int = 0
    files: int = 0
    bytes: int = 0
    entries_done: int = 0
    files_verified: int = 0
    bytes_verified: int = 0
    skipped: int = 0
    to_copy_files: int = 0
    to_copy_bytes: int = 0
    batches: set[int] = field(default_factory=set)

    def count(self, e: WalkEntry, state: str, batch: int) -> None:
        self.entries += 1
        is_file = e.kind == FILE
        if is_file:
            self.files += 1
            self.bytes += e.size
        if state in (DONE, SKIPPED):
            self.entries_done += 1
            if state == SKIPPED:
                self.skipped += 1
            elif is_file:
                self.files_verified += 1
                self.bytes_verified += e.size
        elif batch != NO_BATCH:
            self.batches.add(batch)
            if is_file:
                self.to_copy_files += 1
                self.to_copy_bytes += e.size


def _row_values(e: WalkEntry, group: str | None) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "size": e.size,
        "mtime_ns": e.mtime_ns,
        "ctime_ns": e.ctime_ns,
        "mode": e.mode,
        "uid": e.uid,
        "gid": e.gid,
        "blocks": e.blocks,
        "rdev": e.rdev,
        "link_target": e.link_target,
        "hardlink_group": group,
    }


class _Planner:
    def __init__(self, job_id: str, generation: int, fresh: bool, keep_links: bool) -> None:
        settings = get_settings()
        self.job_id = job_id
        self.generation = generation
        self.fresh = fresh
        self.keep_links = keep_links
        self.batcher = _Batcher(settings.batch_max_files, settings.batch_max_bytes, 0)
        self.totals = _Totals()
        self.leaders: dict[tuple[int, int], bytes] = {}

    def start_batches_after(self, last_batch: int) -> None:
        self.batcher.next_batch = last_batch + 1

    def _link_kind(self, e: WalkEntry) -> str | None:
        """Hard-link names after the first become HARDLINK rows pointing at the first name."""
        if e.inode is None:
            return None
        group = f"{e.inode[0]}:{e.inode[1]}"
        leader = self.leaders.setdefault(e.inode, e.path)
        if leader != e.path and self.keep_links:
            e.kind = HARDLINK
            e.link_target = leader
            e.size = 0
        return group

    def write_chunk(self, session: Session, chunk: Sequence[WalkEntry]) -> None:
        groups = [self._link_kind(e) for e in chunk]
        keys = [path_key(e.path) for e in chunk]
        existing: dict[str, Row[Any]] = {}
        if not self.fresh:
            cols = [T.c[c] for c in ("id", "path_key", "state", "batch", *_COMPARED)]
            rows = session.execute(
                select(*cols).where(T.c.job_id == self.job_id, T.c.path_key.in_(keys))
            )
            existing = {r.path_key: r for r in rows}
        inserts: list[dict[str, Any]] = []
        seen_ids: list[dict[str, Any]] = []
        requeue: list[dict[str, Any]] = []
        for e, key, group in zip(chunk, keys, groups, strict=True):
            old = existing.get(key)
            unchanged = old is not None and all(getattr(old, c) == getattr(e, c) for c in _COMPARED)
            if old is not None and unchanged and old.state in (DONE, SKIPPED, PLANNED):
                seen_ids.append({"_id": old.id})
                self.totals.count(e, old.state, old.batch)
                continue
            batch = NO_BATCH if e.kind == HARDLINK else self.batcher.assign(e.size)
            values = _row_values(e, group)
            values.update(
                state=PLANNED, batch=batch, generation=self.generation, attempts=0, error=None
            )
            values.update(src_hash=None, dst_hash=None)
            if old is None:
                values.update(job_id=self.job_id, path=e.path, path_key=key)
                inserts.append(values)
            else:
                values["_id"] = old.id
                requeue.append(values)
            self.totals.count(e, PLANNED, batch)
        if inserts:
            session.execute(insert(T), inserts)
        if seen_ids:
            session.execute(
                update(T).where(T.c.id == bindparam("_id")).values(generation=self.generation),
                seen_ids,
            )
        if requeue:
            binds: dict[str, Any] = {k: bindparam(k) for k in requeue[0] if k != "_id"}
            session.execute(update(T).where(T.c.id == bindparam("_id")).values(**binds), requeue)


def plan_copy(
    job_id: str, source_url: str, dest_url: str, *, db_url: str | None = None
) -> PlanSummary:
    """Walk the source into the manifest. Idempotent; a re-plan re-queues only what changed
    (size, mtime, ctime, mode, owner, link target) and marks what vanished."""
    started = time.perf_counter()
    source = open_endpoint(source_url)
    dest = open_endpoint(dest_url)
    with session_scope(db_url) as session:
        job = session.get(CopyJob, job_id)
        if job is None:
            job = CopyJob(id=job_id, source_url=source.url, dest_url=dest.url)
            session.add(job)
            session.flush()
        job.generation += 1
        job.state = "planning"
        generation = job.generation
        last_batch = session.scalar(select(func.max(T.c.batch)).where(T.c.job_id == job_id))
        fresh = last_batch is None
    planner = _Planner(job_id, generation, fresh, keep_links=source.local and dest.local)
    planner.start_batches_after(last_batch if last_batch is not None else -1)
    chunk: list[WalkEntry] = []
    for entry in walk(source):
        chunk.append(entry)
        if len(chunk) >= CHUNK:
            with session_scope(db_url) as session:
                planner.write_chunk(session, chunk)
            chunk = []
    with session_scope(db_url) as session:
        if chunk:
            planner.write_chunk(session, chunk)
        session.execute(
            update(T)
            .where(T.c.job_id == job_id, T.c.generation < generation, T.c.state != VANISHED)
            .values(state=VANISHED)
        )
        vanished_total = session.scalar(
            select(func.count()).where(T.c.job_id == job_id, T.c.state == VANISHED)
        )
        t = planner.totals
        job = session.get(CopyJob, job_id)
        assert job is not None
        job.state = "planned"
        job.entries_planned, job.entries_done = t.entries, t.entries_done
        job.files_planned, job.bytes_planned = t.files, t.bytes
        job.files_verified, job.bytes_verified = t.files_verified, t.bytes_verified
        job.files_skipped, job.files_failed = t.skipped, 0
        job.batches = max(planner.batcher.last + 1, job.batches)
        job.error = None
    return PlanSummary(
        job_id=job_id,
        generation=generation,
        entries=t.entries,
        files=t.files,
        bytes=t.bytes,
        batches_pending=len(t.batches),
        files_to_copy=t.to_copy_files,
        bytes_to_copy=t.to_copy_bytes,
        vanished=int(vanished_total or 0),
        seconds=time.perf_counter() - started,
    )


def pending_batches(job_id: str, *, db_url: str | None = None) -> list[int]:
    """Batches with entries still to copy, biggest first (so parallel workers finish together)."""
    with session_scope(db_url) as session:
        job = session.get(CopyJob, job_id)
        if job is None:
            raise NotFoundError(f"copy job {job_id} not found")
        rows = session.execute(
            select(T.c.batch, func.sum(T.c.size).label("bytes"))
            .where(T.c.job_id == job_id, T.c.state == PLANNED, T.c.batch != NO_BATCH)
            .group_by(T.c.batch)
            .order_by(func.sum(T.c.size).desc(), T.c.batch)
        )
        return [int(r.batch) for r in rows]


def display_path(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace") if path else "."

"""Walk a source into manifest rows and batches; a re-plan is the incremental diff.

Rows are written in chunks (one short transaction each), so a million-entry tree never sits
in memory and concurrent writers wait milliseconds, not minutes.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import xxhash
from sqlalchemy import Row, Table, func, select, update
from sqlalchemy.orm import Session

from storage.db import session_scope
from storage.errors import NotFoundError, UnreadableSourceError
from storage.models.manifest import CopyJob, ManifestEntry
from storage.mover.endpoints import normalize_url, open_endpoint
from storage.mover.results import PlanSummary
from storage.mover.sql import executemany
from storage.mover.throttle import Throttle
from storage.mover.walk import FILE, HARDLINK, WalkEntry, WalkProblems, walk
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


_ROW_COLS = (
    "kind",
    "size",
    "mtime_ns",
    "ctime_ns",
    "mode",
    "uid",
    "gid",
    "blocks",
    "rdev",
    "link_target",
    "hardlink_group",
    "batch",
    "generation",
    "state",
    "attempts",
)
INSERT_ENTRY = (
    f"INSERT INTO manifest_entries (job_id, path, path_key, {', '.join(_ROW_COLS)}) "
    f"VALUES (?, ?, ?, {', '.join('?' for _ in _ROW_COLS)})"
)
_REQUEUE = (
    f"UPDATE manifest_entries SET {', '.join(c + ' = ?' for c in _ROW_COLS)}, "
    "src_hash = NULL, dst_hash = NULL, error = NULL WHERE id = ?"
)
_SEEN = "UPDATE manifest_entries SET generation = ? WHERE id = ?"


def _row_values(e: WalkEntry, group: str | None, batch: int, generation: int) -> tuple[Any, ...]:
    return (
        e.kind,
        e.size,
        e.mtime_ns,
        e.ctime_ns,
        e.mode,
        e.uid,
        e.gid,
        e.blocks,
        e.rdev,
        e.link_target,
        group,
        batch,
        generation,
        PLANNED,
        0,
    )


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
        self.reported: set[int] = set()
        self.first_new = 0
        self.written = _Totals()

    def closed_batches(self, final: bool) -> list[int]:
        """Batches of this plan no later entry can join, not reported before."""
        # During the walk only batches made by this plan: an older batch may still hold
        # rows the walk has not reached (and will count itself).
        low, high = (-1, 1 << 62) if final else (self.first_new, self.batcher.next_batch)
        ready = sorted(b for b in self.totals.batches - self.reported if low <= b < high)
        self.reported.update(ready)
        return ready

    def start_batches_after(self, last_batch: int) -> None:
        self.batcher.next_batch = self.first_new = last_batch + 1

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
        inserts: list[tuple[Any, ...]] = []
        seen: list[tuple[int, int]] = []
        requeue: list[tuple[Any, ...]] = []
        for e, key, group in zip(chunk, keys, groups, strict=True):
            old = existing.get(key)
            unchanged = old is not None and all(getattr(old, c) == getattr(e, c) for c in _COMPARED)
            if old is not None and unchanged and old.state in (DONE, SKIPPED, PLANNED):
                seen.append((self.generation, old.id))
                self.totals.count(e, old.state, old.batch)
                continue
            batch = NO_BATCH if e.kind == HARDLINK else self.batcher.assign(e.size)
            values = _row_values(e, group, batch, self.generation)
            if old is None:
                inserts.append((self.job_id, e.path, key, *values))
            else:
                requeue.append((*values, old.id))
            self.totals.count(e, PLANNED, batch)
        executemany(session, INSERT_ENTRY, inserts)
        executemany(session, _SEEN, seen)
        executemany(session, _REQUEUE, requeue)
        self._write_counters(session)

    def _write_counters(self, session: Session) -> None:
        """Planned totals so far; done counts as increments, since batches copied during the
        walk add their own."""
        t, w = self.totals, self.written
        session.execute(
            update(J)
            .where(J.c.id == self.job_id)
            .values(
                entries_planned=t.entries,
                files_planned=t.files,
                bytes_planned=t.bytes,
                entries_done=J.c.entries_done + (t.entries_done - w.entries_done),
                files_verified=J.c.files_verified + (t.files_verified - w.files_verified),
                bytes_verified=J.c.bytes_verified + (t.bytes_verified - w.bytes_verified),
                files_skipped=J.c.files_skipped + (t.skipped - w.skipped),
            )
        )
        w.entries_done, w.files_verified = t.entries_done, t.files_verified
        w.bytes_verified, w.skipped = t.bytes_verified, t.skipped


def plan_copy(
    job_id: str,
    source_url: str,
    dest_url: str,
    *,
    db_url: str | None = None,
    on_batches: Callable[[list[int]], None] | None = None,
) -> PlanSummary:
    """Walk the source into the manifest. Idempotent; a re-plan re-queues only what changed
    (size, mtime, ctime, mode, owner, link target) and marks what vanished.

    `on_batches` is called with batches as soon as they are complete and committed, so a
    caller can copy them while the walk goes on."""
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
        # Recounted by this walk; `copy_batch` adds what it verifies from here on.
        job.entries_planned = job.entries_done = job.files_planned = job.bytes_planned = 0
        job.files_verified = job.bytes_verified = job.files_skipped = job.files_failed = 0
        generation = job.generation
        last_batch = session.scalar(select(func.max(T.c.batch)).where(T.c.job_id == job_id))
        fresh = last_batch is None
    planner = _Planner(job_id, generation, fresh, keep_links=source.local and dest.local)
    planner.start_batches_after(last_batch if last_batch is not None else -1)
    limit = get_settings().walk_limit_entries
    throttle = Throttle(limit) if limit else None
    chunk: list[WalkEntry] = []
    problems = WalkProblems()
    for entry in walk(source, problems):
        if throttle is not None:
            throttle.consume(1)
        chunk.append(entry)
        if len(chunk) >= CHUNK:
            with session_scope(db_url) as session:
                planner.write_chunk(session, chunk)
            chunk = []
            if on_batches is not None:
                on_batches(planner.closed_batches(final=False))
    with session_scope(db_url) as session:
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
        job.batches = max(planner.batcher.last + 1, job.batches)
        job.error = None
    if on_batches is not None:
        on_batches(planner.closed_batches(final=True))
    if problems.unreadable:
        first = "; ".join(f"{display_path(p)}: {why}" for p, why in problems.unreadable_paths)
        raise UnreadableSourceError(
            f"{problems.unreadable} source director{'y' if problems.unreadable == 1 else 'ies'} "
            f"cannot be listed by the mover (uid {os.geteuid()}), so their contents would not "
            f"be migrated (first: {first}); make them readable and start again"
        )
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
        vanished_while_walking=problems.vanished,
        vanished_paths=[display_path(p) for p in problems.vanished_paths],
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


def open_entries(job_id: str, *, db_url: str | None = None) -> tuple[int, bytes | None]:
    """Entries of the plan not verified yet (planned, changed or failed), and the first path."""
    is_open = (T.c.job_id == job_id) & T.c.state.in_((PLANNED, FAILED, CHANGED))
    with session_scope(db_url) as session:
        count = int(session.scalar(select(func.count()).where(is_open)) or 0)
        first = session.scalar(select(T.c.path).where(is_open).order_by(T.c.path).limit(1))
    return count, first


def failed_entries(job_id: str, *, db_url: str | None = None) -> tuple[int, list[str]]:
    """Entries that failed for good, and the first few as "path: why" (for messages)."""
    failed = (T.c.job_id == job_id) & (T.c.state == FAILED)
    with session_scope(db_url) as session:
        count = int(session.scalar(select(func.count()).where(failed)) or 0)
        rows = session.execute(
            select(T.c.path, T.c.error).where(failed).order_by(T.c.path).limit(5)
        )
        first = [f"{display_path(bytes(r.path))}: {r.error}" for r in rows]
    return count, first


def display_path(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace") if path else "."

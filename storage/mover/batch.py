"""`copy_batch`: copy and verify one batch of manifest entries; idempotent through the manifest.

Results are written in bulk (one short transaction per ~second of work), so a crash loses at
most the files copied since the last flush, and a re-run skips every verified entry.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update

from storage.db import session_scope
from storage.errors import (
    CancelledError,
    CapacityError,
    DataIntegrityError,
    NotFoundError,
    PermanentError,
    SharemigError,
    TransientError,
)
from storage.mover.endpoints import Endpoint, open_endpoint
from storage.mover.fsspec_copy import StreamCopier
from storage.mover.local_copy import FileRow, LocalCopier, SourceChanged, ram_backed, syncfs
from storage.mover.plan import CHANGED, DONE, FAILED, PLANNED, SKIPPED, J, T, display_path
from storage.mover.results import BatchResult
from storage.mover.sql import executemany, fetchall
from storage.mover.throttle import Pacer
from storage.mover.walk import DIR, FILE, SYMLINK
from storage.settings import get_settings

FLUSH_SECONDS = 1.0
FLUSH_ROWS = 1000
VERIFY_GROUP_FILES = 256
VERIFY_GROUP_BYTES = 256 << 20
"""Files written between two verify passes (each pass starts with one `syncfs`)."""

TRANSIENT_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ECONNREFUSED,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ESTALE,
    }
)
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
FATAL_ERRNOS = FULL_ERRNOS | {errno.EROFS}

_UPDATE = (
    "UPDATE manifest_entries SET state = ?, src_hash = ?, dst_hash = ?, attempts = ?, error = ? "
    "WHERE id = ?"
)

BEFORE_VERIFY: Callable[[bytes], None] | None = None
"""Test seam: called with the destination path after a file is written, before it is read back
(the corruption test flips a byte here). Always None in production."""

_ROW_COLS = (
    "id",
    "path",
    "kind",
    "size",
    "mtime_ns",
    "mode",
    "uid",
    "gid",
    "blocks",
    "rdev",
    "link_target",
    "attempts",
)


@dataclass
class _Recorder:
    """Buffers per-entry outcomes and job counter deltas; flushes them in one transaction."""

    job_id: str
    db_url: str | None
    result: BatchResult
    updates: list[tuple[Any, ...]] = field(default_factory=list)
    deltas: dict[str, int] = field(default_factory=dict)
    last_path: bytes | None = None
    last_flush: float = field(default_factory=time.monotonic)
    files_verified: int = 0
    bytes_verified: int = 0
    recopies: int = 0
    entries_done: int = 0
    """Entries other than verified files (directories, links, specials)."""
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("files_copied", "bytes_copied", "entries_done", "recopies", "skipped", "changed"), 0
        )
    )
    """Plain ints in the per-file path; copied onto the pydantic result once, at the end."""

    def _add(self, row: FileRow, state: str, **values: Any) -> None:
        self.updates.append(
            (
                state,
                values.get("src_hash"),
                values.get("dst_hash"),
                values.get("attempts", row.attempts),
                values.get("error"),
                row.id,
            )
        )
        self.last_path = row.path

    def _bump(self, **counts: int) -> None:
        for key, n in counts.items():
            self.deltas[key] = self.deltas.get(key, 0) + n

    def verified(self, row: FileRow, digest: str, attempts: int) -> None:
        # The per-file hot path: plain appends and int adds, flushed as deltas.
        self.updates.append((DONE, digest, digest, attempts, None, row.id))
        self.last_path = row.path
        self.files_verified += 1
        self.bytes_verified += row.size
        self.recopies += attempts - 1

    def done(self, row: FileRow) -> None:
        self.updates.append((DONE, None, None, row.attempts, None, row.id))
        self.last_path = row.path
        self.entries_done += 1

    def skipped(self, row: FileRow, reason: str) -> None:
        self._add(row, SKIPPED, error=reason)
        self._bump(entries_done=1, files_skipped=1)
        self.counts["skipped"] += 1

    def changed(self, row: FileRow, reason: str) -> None:
        self._add(row, CHANGED, error=reason)
        self.counts["changed"] += 1

    def failed(self, row: FileRow, reason: str, **values: Any) -> None:
        self._add(row, FAILED, error=reason, **values)
        self._bump(files_failed=1)
        self.result.failed.append(f"{display_path(row.path)}: {reason}")

    def maybe_flush(self) -> None:
        if len(self.updates) >= FLUSH_ROWS or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def _totals(self) -> None:
        """Fold the hot-path ints into the counters and deltas (once per flush)."""
        fv, bv, ed = self.files_verified, self.bytes_verified, self.entries_done
        if fv or bv or ed:
            self._bump(files_verified=fv, bytes_verified=bv, entries_done=fv + ed)
            c = self.counts
            c["files_copied"] += fv
            c["bytes_copied"] += bv
            c["entries_done"] += fv + ed
            c["recopies"] += self.recopies
            self.files_verified = self.bytes_verified = self.entries_done = self.recopies = 0
        for key, n in self.counts.items():
            setattr(self.result, key, n)

    def flush(self) -> None:
        self._totals()
        self.last_flush = time.monotonic()
        if not self.updates:
            return
        with session_scope(self.db_url) as session:
            executemany(session, _UPDATE, self.updates)
            values: dict[str, Any] = {k: J.c[k] + n for k, n in self.deltas.items()}
            if self.last_path is not None:
                values["current_path"] = display_path(self.last_path)
            session.execute(update(J).where(J.c.id == self.job_id).values(**values))
        self.updates = []
        self.deltas = {}


UNREADABLE = "unreadable by the mover"


def unreadable_reason(exc: OSError) -> str:
    """The manifest's error for a source file the mover may not open (counted by the copy)."""
    return f"{UNREADABLE} (uid {os.geteuid()}): {exc.strerror or exc}"


def _classify(exc: OSError, row: FileRow) -> SharemigError | None:
    """Errors that end the batch; None means the entry alone failed."""
    where = display_path(row.path)
    if exc.errno in TRANSIENT_ERRNOS:
        return TransientError(f"{where}: {exc.strerror or exc}")
    if exc.errno in FULL_ERRNOS:
        return CapacityError(f"{where}: {exc.strerror or exc}")
    if exc.errno in FATAL_ERRNOS:
        return PermanentError(f"{where}: {exc.strerror or exc}")
    return None


_LOAD = (
    f"SELECT {', '.join(_ROW_COLS)} FROM manifest_entries "
    "WHERE job_id = ? AND batch = ? AND state = ? ORDER BY id"
)


def _row(r: Any) -> FileRow:
    row = FileRow(*r)
    # Some drivers hand binary columns back as memoryview; paths are bytes in the mover.
    if not isinstance(row.path, bytes):
        row.path = bytes(row.path)
    if row.link_target is not None and not isinstance(row.link_target, bytes):
        row.link_target = bytes(row.link_target)
    return row


def _load(
    job_id: str, batch: int, db_url: str | None
) -> tuple[Endpoint, Endpoint, list[FileRow], int]:
    with session_scope(db_url) as session:
        urls = session.execute(select(J.c.source_url, J.c.dest_url).where(J.c.id == job_id)).first()
        if urls is None:
            raise NotFoundError(f"copy job {job_id} not found")
        # Plain DB-API rows: result processing cost more than the query for a big batch.
        rows = [_row(r) for r in fetchall(session, _LOAD, (job_id, batch, PLANNED))]
        already = session.scalar(
            select(func.count()).where(
                T.c.job_id == job_id, T.c.batch == batch, T.c.state == DONE, T.c.kind == FILE
            )
        )
    return open_endpoint(urls[0]), open_endpoint(urls[1]), rows, int(already or 0)


@contextmanager
def _flushing(rec: _Recorder) -> Iterator[None]:
    """Whatever ends the batch, what was verified so far is recorded first."""
    try:
        yield
    finally:
        rec.flush()


def copy_batch(
    job_id: str,
    batch: int,
    *,
    db_url: str | None = None,
    should_stop: Callable[[], bool] | None = None,
    throttle: Pacer | None = None,
    verify_from_device: bool | None = None,
) -> BatchResult:
    """Copy and verify the entries of one batch that are not verified yet.

    Raises TransientError for retriable I/O, DataIntegrityError when a file still differs
    after the bounded re-copies, PermanentError for other entries that failed, and
    CancelledError once `should_stop()` turns true (checked between files and inside large
    ones). Every outcome reached before the exception is recorded. `throttle` is shared by
    every batch of a copy (a fresh one per batch would grant each its own second of burst,
    and small batches would never be slowed). `verify_from_device`
    (default: unless the destination is RAM-backed) re-reads from the device, not the cache.
    """
    source, dest, rows, already = _load(job_id, batch, db_url)
    result = BatchResult(job_id=job_id, batch=batch, files_already_verified=already)
    rec = _Recorder(job_id, db_url, result)
    attempts = max(1, get_settings().verify_attempts)
    with _flushing(rec):
        if source.local and dest.local:
            if verify_from_device is None:
                verify_from_device = not ram_backed(dest.root_bytes)
            local = LocalCopier(
                source.root_bytes,
                dest.root_bytes,
                throttle=throttle,
                should_stop=should_stop,
                verify_from_device=verify_from_device,
            )
            _LocalRun(local, rec, attempts, should_stop).run(rows)
            result.merge_not_preserved(local.lost)
        else:
            stream = StreamCopier(source, dest, throttle=throttle, should_stop=should_stop)
            _stream_run(stream, rec, rows, attempts, should_stop)
            result.merge_not_preserved(stream.lost)
    _count_not_preserved(job_id, result, db_url)
    integrity = [f for f in result.failed if "did not verify" in f]
    if integrity:
        raise DataIntegrityError(
            f"{len(integrity)} file(s) did not verify: " + "; ".join(integrity)
        )
    if result.failed:
        raise PermanentError(f"{len(result.failed)} entries failed: " + "; ".join(result.failed))
    return result


def _count_not_preserved(job_id: str, result: BatchResult, db_url: str | None) -> None:
    """Keep the job's total of metadata the destination could not hold (for its report)."""
    lost = sum(result.not_preserved.values())
    if lost:
        with session_scope(db_url) as session:
            session.execute(
                update(J).where(J.c.id == job_id).values(not_preserved=J.c.not_preserved + lost)
            )


class _LocalRun:
    def __init__(
        self,
        copier: LocalCopier,
        rec: _Recorder,
        attempts: int,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.copier = copier
        self.rec = rec
        self.attempts = attempts
        self.should_stop = should_stop
        self.open: list[tuple[FileRow, int, str]] = []
        self.open_bytes = 0

    def run(self, rows: list[FileRow]) -> None:
        try:
            for row in rows:
                if self.should_stop is not None and self.should_stop():
                    # Files already written are verified (a bounded group) so a resume
                    # does not copy them again.
                    self._verify_open()
                    raise CancelledError("copy stopped on request")
                self._one(row)
                self.rec.maybe_flush()
            self._verify_open()
        finally:
            for _, fd, _ in self.open:
                os.close(fd)
            self.open.clear()

    def _one(self, row: FileRow) -> None:
        c = self.copier
        try:
            if row.kind == FILE:
                fd, digest = c.copy_file(row)
                self.open.append((row, fd, digest))
                self.open_bytes += row.size
                if len(self.open) >= VERIFY_GROUP_FILES or self.open_bytes >= VERIFY_GROUP_BYTES:
                    self._verify_open()
                return
            if row.kind == DIR:
                c.make_dir(row)
            elif row.kind == SYMLINK:
                c.make_symlink(row)
            else:
                reason = c.make_special(row)
                if reason is not None:
                    self.rec.skipped(row, reason)
                    return
            self.rec.done(row)
        except SourceChanged as exc:
            self.rec.changed(row, str(exc))
        except PermissionError as exc:
            if exc.filename == c.src(row.path):
                self.rec.failed(row, unreadable_reason(exc))
            else:
                self.rec.failed(row, exc.strerror or str(exc))
        except OSError as exc:
            fatal = _classify(exc, row)
            if fatal is not None:
                raise fatal from exc
            self.rec.failed(row, exc.strerror or str(exc))

    def _verify_open(self) -> None:
        if not self.open:
            return
        group, self.open, self.open_bytes = self.open, [], 0
        if self.copier.verify_from_device:
            syncfs(group[0][1])
        mismatched: list[FileRow] = []
        try:
            while group:
                row, fd, digest = group[0]
                if BEFORE_VERIFY is not None:
                    BEFORE_VERIFY(self.copier.dst(row.path))
                back = self.copier.hash_back(fd, row.size, row.blocks * 512 < row.size)
                group.pop(0)
                os.close(fd)
                if back == digest:
                    self.rec.verified(row, digest, row.attempts + 1)
                else:
                    mismatched.append(row)
        finally:
            for _, fd, _ in group:
                os.close(fd)
        for row in mismatched:
            self._recopy(row)

    def _recopy(self, row: FileRow) -> None:
        """Copy a file that did not verify again, up to the attempt limit."""
        digest = back = ""
        for attempt in range(2, self.attempts + 1):
            try:
                fd, digest = self.copier.copy_file(row)
            except SourceChanged as exc:
                self.rec.changed(row, str(exc))
                return
            try:
                if self.copier.verify_from_device:
                    syncfs(fd)
                if BEFORE_VERIFY is not None:
                    BEFORE_VERIFY(self.copier.dst(row.path))
                back = self.copier.hash_back(fd, row.size, row.blocks * 512 < row.size)
            finally:
                os.close(fd)
            if back == digest:
                self.rec.verified(row, digest, attempt)
                return
        self.rec.failed(
            row,
            f"did not verify after {self.attempts} copies (source {digest}, destination {back})",
            src_hash=digest,
            dst_hash=back,
            attempts=self.attempts,
        )


def _stream_run(
    copier: StreamCopier,
    rec: _Recorder,
    rows: list[FileRow],
    attempts: int,
    should_stop: Callable[[], bool] | None,
) -> None:
    for row in rows:
        if should_stop is not None and should_stop():
            raise CancelledError("copy stopped on request")
        try:
            if row.kind == FILE:
                _stream_file(copier, rec, row, attempts)
            elif row.kind == DIR:
                copier.make_dir(row)
                rec.done(row)
            else:
                rec.skipped(row, copier.skip_reason(row))
        except SourceChanged as exc:
            rec.changed(row, str(exc))
        except OSError as exc:
            fatal = _classify(exc, row)
            if fatal is not None:
                raise fatal from exc
            if not isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
                # Remote filesystems report network trouble as plain OSError.
                raise TransientError(f"{display_path(row.path)}: {exc}") from exc
            rec.failed(row, exc.strerror or str(exc))
        rec.maybe_flush()


def _stream_file(copier: StreamCopier, rec: _Recorder, row: FileRow, attempts: int) -> None:
    digest = back = ""
    for attempt in range(1, attempts + 1):
        digest = copier.copy_file(row)
        if BEFORE_VERIFY is not None:
            BEFORE_VERIFY(os.fsencode(copier.dest.fs_path(row.path)))
        back = copier.hash_back(row)
        if back == digest:
            rec.verified(row, digest, row.attempts + attempt)
            return
    rec.failed(
        row,
        f"did not verify after {attempts} copies (source {digest}, destination {back})",
        src_hash=digest,
        dst_hash=back,
        attempts=attempts,
    )

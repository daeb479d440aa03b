"""`finish_copy`: what can only happen once every batch is done.

Removes what vanished from the source, makes hard links (their first name must be verified
first), then applies directory metadata deepest first (creating entries changes a
directory's mtime, and a read-only directory must stay writable until its children exist).
"""

from __future__ import annotations

import os
import stat
from typing import Any

from sqlalchemy import bindparam, delete, select, update

from storage.db import session_scope
from storage.errors import NotFoundError
from storage.models.manifest import CopyJob
from storage.mover.endpoints import Endpoint, open_endpoint
from storage.mover.local_copy import copy_xattrs, remove_any, set_owner
from storage.mover.plan import DONE, PLANNED, VANISHED, J, T, open_entries, path_key
from storage.mover.results import FinishSummary
from storage.mover.walk import DIR, HARDLINK

CHUNK = 1000


def _remove_vanished(job_id: str, dest: Endpoint, db_url: str | None) -> int:
    removed = 0
    while True:
        with session_scope(db_url) as session:
            rows = session.execute(
                select(T.c.id, T.c.path)
                .where(T.c.job_id == job_id, T.c.state == VANISHED)
                .order_by(T.c.path.desc())
                .limit(CHUNK)
            ).all()
            if not rows:
                return removed
            for row in rows:
                if dest.local:
                    remove_any(dest.local_path(row.path))
                else:
                    path = dest.fs_path(row.path)
                    if dest.fs.exists(path):
                        dest.fs.rm(path, recursive=True)
            session.execute(delete(T).where(T.c.id.in_([r.id for r in rows])))
            removed += len(rows)


def _make_hardlinks(job_id: str, dest: Endpoint, db_url: str | None) -> int:
    with session_scope(db_url) as session:
        links = session.execute(
            select(T.c.id, T.c.path, T.c.link_target, T.c.state).where(
                T.c.job_id == job_id, T.c.kind == HARDLINK, T.c.state.in_((PLANNED, DONE))
            )
        ).all()
    made: list[dict[str, Any]] = []
    for i in range(0, len(links), CHUNK):
        part = links[i : i + CHUNK]
        keys = {path_key(r.link_target) for r in part}
        with session_scope(db_url) as session:
            ready = {
                r.path_key
                for r in session.execute(
                    select(T.c.path_key).where(
                        T.c.job_id == job_id, T.c.path_key.in_(keys), T.c.state == DONE
                    )
                )
            }
        for r in part:
            if path_key(r.link_target) not in ready:
                continue  # its first name is not verified yet; stays planned
            leader = dest.local_path(r.link_target)
            path = dest.local_path(r.path)
            try:
                if os.lstat(path).st_ino == os.lstat(leader).st_ino:
                    if r.state != DONE:
                        made.append({"_id": r.id})
                    continue
                remove_any(path)
            except FileNotFoundError:
                pass
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            os.link(leader, path)
            made.append({"_id": r.id})
    if made:
        with session_scope(db_url) as session:
            session.execute(update(T).where(T.c.id == bindparam("_id")).values(state=DONE), made)
            session.execute(
                update(J).where(J.c.id == job_id).values(entries_done=J.c.entries_done + len(made))
            )
    return len(made)


def _apply_dir_metadata(job_id: str, source: Endpoint, dest: Endpoint, db_url: str | None) -> int:
    count = 0
    lost: dict[str, int] = {}
    last: bytes | None = None
    cols = (T.c.path, T.c.mode, T.c.uid, T.c.gid, T.c.mtime_ns)
    while True:
        # Keyset pages in descending byte order: every child sorts after its parent.
        query = select(*cols).where(T.c.job_id == job_id, T.c.kind == DIR, T.c.state == DONE)
        if last is not None:
            query = query.where(T.c.path < last)
        with session_scope(db_url) as session:
            rows = session.execute(query.order_by(T.c.path.desc()).limit(CHUNK)).all()
        if not rows:
            return count
        for r in rows:
            path = dest.local_path(r.path)
            set_owner(path, r.uid, r.gid, lost, False)
            copy_xattrs(source.local_path(r.path), path, lost)
            os.chmod(path, stat.S_IMODE(r.mode))
            os.utime(path, ns=(r.mtime_ns, r.mtime_ns), follow_symlinks=False)
            count += 1
        last = rows[-1].path


def finish_copy(job_id: str, *, db_url: str | None = None) -> FinishSummary:
    """Remove what vanished, link hard links, set directory metadata; mark the job done when
    every entry of the current plan is verified or skipped. Safe to run again."""
    with session_scope(db_url) as session:
        job = session.get(CopyJob, job_id)
        if job is None:
            raise NotFoundError(f"copy job {job_id} not found")
        source, dest = open_endpoint(job.source_url), open_endpoint(job.dest_url)
    summary = FinishSummary(job_id=job_id)
    summary.removed = _remove_vanished(job_id, dest, db_url)
    if source.local and dest.local:
        summary.hardlinks = _make_hardlinks(job_id, dest, db_url)
        summary.dirs_updated = _apply_dir_metadata(job_id, source, dest, db_url)
    summary.complete = not open_entries(job_id, db_url=db_url)[0]
    with session_scope(db_url) as session:
        session.execute(
            update(J)
            .where(J.c.id == job_id)
            .values(state="done" if summary.complete else "incomplete")
        )
    return summary

"""Re-check a copy's destination against its manifest before trusting it again.

A verified file stays verified only as long as nobody touches the destination. Between
phase 1 and an approved switchover a destination can sit for days; an operator cleaning a
pool, a full disk or a bad restore can remove or truncate files the manifest still calls
done. `requeue_damaged` finds those entries (one `lstat` each on local destinations, one
listing otherwise) and marks them changed, so the next plan copies them again.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from sqlalchemy import select, update

from storage.db import session_scope
from storage.mover.endpoints import Endpoint, open_endpoint
from storage.mover.plan import CHANGED, DONE, J, T
from storage.mover.walk import DIR, FILE, HARDLINK, SYMLINK

CHUNK = 5000

_LOCAL_KIND = {FILE: stat.S_ISREG, HARDLINK: stat.S_ISREG, DIR: stat.S_ISDIR, SYMLINK: stat.S_ISLNK}


def _local_intact(prefix: bytes, row: Any, keeps_mtime: bool) -> bool:
    try:
        st = os.lstat(prefix + row.path)
    except FileNotFoundError:
        return False
    kind_ok = _LOCAL_KIND.get(row.kind)
    if kind_ok is not None and not kind_ok(st.st_mode):
        return False
    if row.kind == FILE:
        return st.st_size == row.size and (not keeps_mtime or st.st_mtime_ns == row.mtime_ns)
    return True


def _listed_intact(listing: dict[str, Any], dest: Endpoint, row: Any) -> bool:
    if row.kind != FILE:
        return True  # object stores keep no directories, links or special files
    info = listing.get(dest.fs_path(row.path).rstrip("/"))
    return info is not None and info.get("type") == "file" and info.get("size") == row.size


def _listing(dest: Endpoint) -> dict[str, Any]:
    """One listing of the whole destination (a HEAD per object would cost far more)."""
    if not dest.fs.exists(dest.root):
        return {}
    found = dest.fs.find(dest.root, detail=True)
    return {path.rstrip("/"): info for path, info in found.items()}


def requeue_damaged(job_id: str, dest_url: str, *, db_url: str | None = None) -> list[bytes]:
    """Mark every done entry whose destination copy is gone or no longer matches (type,
    size, and mtime where the destination keeps it) as changed; return their paths."""
    dest = open_endpoint(dest_url)
    with session_scope(db_url) as session:
        source_url = session.scalar(select(J.c.source_url).where(J.c.id == job_id))
    if source_url is None:
        return []
    # Only a local -> local copy sets file times; from elsewhere the size must do.
    keeps_mtime = dest.local and open_endpoint(source_url).local
    listing: dict[str, Any] | None = None
    damaged: list[bytes] = []
    last_id = -1
    while True:
        with session_scope(db_url) as session:
            rows = session.execute(
                select(T.c.id, T.c.path, T.c.kind, T.c.size, T.c.mtime_ns)
                .where(T.c.job_id == job_id, T.c.state == DONE, T.c.id > last_id)
                .order_by(T.c.id)
                .limit(CHUNK)
            ).all()
            if not rows:
                return damaged
            last_id = rows[-1].id
            if dest.local:
                prefix = dest.root_bytes.rstrip(b"/") + b"/"  # one join per row is the cost
                bad = [r for r in rows if not _local_intact(prefix, r, keeps_mtime)]
            else:
                listing = _listing(dest) if listing is None else listing
                bad = [r for r in rows if not _listed_intact(listing, dest, r)]
            if bad:
                session.execute(
                    update(T).where(T.c.id.in_([r.id for r in bad])).values(state=CHANGED)
                )
                session.execute(
                    update(J).where(J.c.id == job_id).values(repaired=J.c.repaired + len(bad))
                )
                damaged.extend(r.path for r in bad)

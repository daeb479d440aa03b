"""A migration's report: a summary of its copy and the full manifest listing, streamed.

The listing is read with `yield_per` (a server-side cursor on PostgreSQL, SQLite's lazy
cursor) and written one row at a time, so a million entries take no more memory than ten.
`sharemig report`, the admin API route and the Prefect table artifact all use this module.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, cast

from sqlalchemy import Select, Table, case, func, select
from sqlalchemy.orm import Session

from storage.db import session_scope
from storage.errors import NotFoundError
from storage.models import CopyJob, ManifestEntry, Migration, ShareInstance
from storage.models.base import aware
from storage.mover.plan import display_path
from storage.mover_rates import copy_seconds
from storage.shares import get_share

T = cast(Table, ManifestEntry.__table__)
STREAM_ROWS = 2000
COLUMNS = (
    "path",
    "path_hex",
    "kind",
    "size",
    "mtime_ns",
    "src_xxh3_128",
    "dst_xxh3_128",
    "state",
)


@dataclass(frozen=True)
class ReportSummary:
    share_id: str
    migration_id: str
    source_host: str | None
    destination_host: str
    task_state: str | None
    entries: int
    files: int
    bytes: int
    dirs: int
    links: int
    skipped_special: int
    metadata_not_kept: int
    recopies: int
    damaged_repaired: int
    unverified: int
    duration_s: float
    throughput_bytes_per_s: float


def report_migration(session: Session, share_id: str, project_id: str | None = None) -> Migration:
    """The share's newest migration that has a manifest; `NotFoundError` (the API's 404, the
    CLI's exit 2) for an unknown share or one whose migrations copied nothing through the mover."""
    share = get_share(session, share_id, project_id)
    mig = session.scalar(
        select(Migration)
        .where(Migration.share_id == share.id, Migration.copy_job_id.is_not(None))
        .order_by(Migration.created_at.desc())
        .limit(1)
    )
    if mig is None or mig.copy_job_id is None or session.get(CopyJob, mig.copy_job_id) is None:
        raise NotFoundError(
            f"Share {share.id} has no migration with a manifest: it was never migrated, or "
            "only by its driver (which copies no files through the data mover). "
            "`sharemig status` shows its migration."
        )
    return mig


def summarize(session: Session, mig: Migration, source_host: str | None) -> ReportSummary:
    job = session.get(CopyJob, mig.copy_job_id)
    assert job is not None  # checked by report_migration
    kind, state = T.c.kind, T.c.state

    def count(cond: Any) -> Any:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    row = session.execute(
        select(
            func.count(),
            count(kind == "file"),
            func.coalesce(func.sum(case((kind == "file", T.c.size), else_=0)), 0),
            count(kind == "dir"),
            count(kind.in_(("symlink", "hardlink"))),
            count((kind == "special") | (state == "skipped")),
            func.coalesce(func.sum(case((T.c.attempts > 1, T.c.attempts - 1), else_=0)), 0),
            count(state.in_(("planned", "changed", "failed"))),
        ).where(T.c.job_id == job.id, state != "vanished")
    ).one()
    entries, files, bytes_, dirs, links, special, recopies, unverified = (int(v) for v in row)
    seconds = copy_seconds(session, job.id)
    if seconds is None:
        seconds = (aware(job.updated_at) - aware(job.created_at)).total_seconds()
    seconds = max(0.0, seconds)
    return ReportSummary(
        share_id=mig.share_id,
        migration_id=mig.id,
        source_host=source_host,
        destination_host=mig.dest_host,
        task_state=None,
        entries=entries,
        files=files,
        bytes=bytes_,
        dirs=dirs,
        links=links,
        skipped_special=special,
        metadata_not_kept=job.not_preserved,
        recopies=recopies,
        damaged_repaired=job.repaired,
        unverified=unverified,
        duration_s=round(seconds, 3),
        throughput_bytes_per_s=round(job.bytes_verified / seconds) if seconds > 0 else 0.0,
    )


def _summary_of(s: Session, mig: Migration) -> ReportSummary:
    source = s.get(ShareInstance, mig.source_instance_id)
    summary = summarize(s, mig, source.pool_name if source else None)
    return ReportSummary(**{**asdict(summary), "task_state": get_share(s, mig.share_id).task_state})


def share_summary(
    share_id: str, *, project_id: str | None = None, db_url: str | None = None
) -> tuple[ReportSummary, str]:
    """The summary of the share's report and the copy job whose manifest it lists."""
    with session_scope(db_url) as s:
        mig = report_migration(s, share_id, project_id)
        assert mig.copy_job_id is not None
        return _summary_of(s, mig), mig.copy_job_id


def migration_summary(migration_id: str, *, db_url: str | None = None) -> ReportSummary | None:
    """The report summary of one migration; None when it has no manifest (driver-assisted)."""
    with session_scope(db_url) as s:
        mig = s.get(Migration, migration_id)
        if mig is None or mig.copy_job_id is None or s.get(CopyJob, mig.copy_job_id) is None:
            return None
        return _summary_of(s, mig)


def listing_query(job_id: str) -> Select[Any]:
    """`job_id`'s entries in walk order, read along the (job_id, id) index: no sort, so
    neither the database nor the report holds the listing at once."""
    return (
        select(T.c.path, T.c.kind, T.c.size, T.c.mtime_ns, T.c.src_hash, T.c.dst_hash, T.c.state)
        .where(T.c.job_id == job_id, T.c.state != "vanished")
        .order_by(T.c.id)
        .execution_options(yield_per=STREAM_ROWS, stream_results=True)
    )


def entry_rows(job_id: str, *, db_url: str | None = None) -> Iterator[dict[str, Any]]:
    """Every manifest entry of `job_id` in walk order, one dict at a time (nothing gathered)."""
    with session_scope(db_url) as s:
        for path, kind, size, mtime_ns, src, dst, state in s.execute(listing_query(job_id)):
            raw = bytes(path)
            yield {
                "path": display_path(raw),
                "path_hex": raw.hex(),
                "kind": kind,
                "size": size,
                "mtime_ns": mtime_ns,
                "src_xxh3_128": src,
                "dst_xxh3_128": dst,
                "state": state,
            }


def json_chunks(summary: ReportSummary, rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """`{"summary": {...}, "entries": [...]}` as text pieces of up to `STREAM_ROWS` entries."""
    yield '{"summary": ' + json.dumps(asdict(summary)) + ', "entries": ['
    sep, piece = "\n", []
    for row in rows:
        piece.append(sep + json.dumps(row))
        sep = ",\n"
        if len(piece) >= STREAM_ROWS:
            yield "".join(piece)
            piece = []
    yield "".join(piece) + "\n]}\n"


def csv_chunks(summary: ReportSummary, rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """The summary as `# key: value` comment lines, then a header and one line per entry."""
    yield "".join(f"# {key}: {value}\n" for key, value in asdict(summary).items())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for n, row in enumerate(rows, 1):
        writer.writerow(row)
        if n % STREAM_ROWS == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()

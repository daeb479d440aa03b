"""`storage.migration_report` and `sharemig report`: summary, listing, formats, memory."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from storage.db import session_scope
from storage.errors import NotFoundError
from storage.migration_report import (
    csv_chunks,
    entry_rows,
    json_chunks,
    listing_query,
    share_summary,
)
from storage.models import CopyJob, Migration, MoverRate
from storage.models.base import utcnow
from storage.mover.plan import path_key
from storage.mover.sql import executemany
from storage.shares import active_instance, create_share
from tests.kit.processes import peak_rss

SHAREMIG = str(Path(sys.executable).with_name("sharemig"))
INSERT = (
    "INSERT INTO manifest_entries (job_id, path, path_key, kind, size, mtime_ns, ctime_ns, mode,"
    " blocks, rdev, batch, generation, state, src_hash, dst_hash, attempts) "
    "VALUES (?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, 0, ?, ?, ?, ?)"
)


def _migration_with_manifest(session: Session, rows: list[tuple[object, ...]]) -> tuple[str, str]:
    share = create_share(session, project_id="p1", size=1, host="h1@lfs#a", name="rep")
    job = CopyJob(
        source_url="/src",
        dest_url="/dst",
        state="done",
        files_verified=sum(1 for r in rows if r[1] == "file"),
        bytes_verified=sum(int(r[2]) for r in rows if r[1] == "file"),  # type: ignore[call-overload]
        not_preserved=2,
        repaired=1,
        created_at=utcnow() - timedelta(seconds=10),
    )
    session.add(job)
    session.flush()
    mig = Migration(
        share_id=share.id,
        source_instance_id=active_instance(session, share).id,
        dest_host="h1@lfs#b",
        copy_job_id=job.id,
        mechanism="host",
    )
    session.add(mig)
    session.add(MoverRate(hostname="h", job_id=job.id, files=1, bytes=1, seconds=4.0))
    executemany(
        session,
        INSERT,
        [(job.id, p, path_key(p), k, sz, 7, st, h, h, a) for p, k, sz, st, h, a in rows],  # type: ignore[misc]
    )
    session.commit()
    return share.id, job.id


ROWS = [
    (b"", "dir", 0, "done", None, 1),
    (b"a.txt", "file", 5, "done", "aa" * 16, 1),
    (b"caf\xe9\n.bin", "file", 7, "done", "bb" * 16, 3),  # Latin-1 and a newline in the name
    (b"ln", "symlink", 0, "done", None, 1),
    (b"fifo", "special", 0, "skipped", None, 0),
    (b"gone", "file", 1, "vanished", None, 1),
]


def test_summary_and_listing(session: Session, db_url: str) -> None:
    share_id, job_id = _migration_with_manifest(session, ROWS)
    summary, listed_job = share_summary(share_id, db_url=db_url)
    assert listed_job == job_id
    assert (summary.entries, summary.files, summary.bytes, summary.dirs, summary.links) == (
        5,
        2,
        12,
        1,
        1,
    )
    assert (summary.skipped_special, summary.recopies, summary.unverified) == (1, 2, 0)
    assert (summary.metadata_not_kept, summary.damaged_repaired) == (2, 1)
    assert summary.duration_s == 4.0 and summary.throughput_bytes_per_s == 3  # 12 B in 4 s
    report = json.loads("".join(json_chunks(summary, entry_rows(job_id, db_url=db_url))))
    assert report["summary"]["files"] == 2
    paths = [bytes.fromhex(e["path_hex"]) for e in report["entries"]]
    assert paths == [r[0] for r in ROWS[:-1]]  # walk order, vanished left out
    odd = report["entries"][2]
    assert odd["path"] == "caf\\xe9\n.bin" and odd["src_xxh3_128"] == "bb" * 16


def test_csv_is_one_line_per_entry_after_the_summary(session: Session, db_url: str) -> None:
    share_id, job_id = _migration_with_manifest(session, ROWS)
    summary, _ = share_summary(share_id, db_url=db_url)
    text = "".join(csv_chunks(summary, entry_rows(job_id, db_url=db_url)))
    comments = [line for line in text.splitlines() if line.startswith("# ")]
    assert "# files: 2" in comments
    body = "\n".join(line for line in text.split("\n") if not line.startswith("# "))
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [bytes.fromhex(r["path_hex"]) for r in rows] == [r[0] for r in ROWS[:-1]]
    assert rows[1]["dst_xxh3_128"] == "aa" * 16 and rows[4]["state"] == "skipped"


def test_unknown_share_or_no_manifest_is_not_found(session: Session, db_url: str) -> None:
    with pytest.raises(NotFoundError, match="could not be found"):
        share_summary("no-such-share", db_url=db_url)
    share = create_share(session, project_id="p1", size=1, host="h1@lfs#a", name="never")
    session.commit()
    with pytest.raises(NotFoundError, match="no migration with a manifest"):
        share_summary(share.id, db_url=db_url)
    env = dict(os.environ)
    out = subprocess.run([SHAREMIG, "report", share.id], capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "no migration with a manifest" in " ".join(out.stderr.split())
    bad = subprocess.run([SHAREMIG, "report", share.id, "--format", "xml"], capture_output=True)
    assert bad.returncode == 2


def test_the_listing_is_read_in_walk_order_without_a_sort(session: Session) -> None:
    """A sort would hold the whole listing (SQLite's temporary B-tree) before the first row."""
    if session.bind is None or session.bind.dialect.name != "sqlite":
        pytest.skip("SQLite's query plan")
    query = listing_query("some-job")
    sql = str(query.compile(session.bind, compile_kwargs={"literal_binds": True}))
    plan = " ".join(str(row[-1]) for row in session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    assert "ix_manifest_entries_job_id_id" in plan and "TEMP B-TREE" not in plan, plan


MILLION = 1_000_000


@pytest.mark.slow
@pytest.mark.scale
def test_a_million_entries_stream_in_flat_memory(
    session: Session, db_url: str, tmp_path: Path
) -> None:
    """Rows inserted directly (a real walk of a million files would take minutes); the
    report runs as the real CLI in its own process, whose peak RSS the kernel reports."""
    share_id, job_id = _migration_with_manifest(session, ROWS[:1])
    chunk = 50_000
    for start in range(0, MILLION, chunk):
        with session_scope(db_url) as s:
            executemany(
                s,
                INSERT,
                [
                    (job_id, p, path_key(p), "file", 4096, 7, "done", "cd" * 16, "cd" * 16, 1)
                    for p in (
                        f"d{i // 1000}/file-{i:07d}.dat".encode()
                        for i in range(start, start + chunk)
                    )
                ],
            )
    out = tmp_path / "report.csv"
    peak = peak_rss(
        [SHAREMIG, "report", share_id, "--format", "csv", "--output", str(out)],
        env=dict(os.environ),
    )
    assert peak.exit_code == 0, peak.stderr
    peak_mb = peak.rss_mb
    with out.open() as f:
        lines = sum(1 for line in f if not line.startswith("# "))
    assert lines == 1 + MILLION + 1  # header, the million, the root
    assert peak_mb < 200, f"sharemig report peaked at {peak_mb:.0f} MB"

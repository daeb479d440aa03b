"""kill -9 in the middle of a copy, then run it again: nothing verified is copied twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.db import session_scope
from storage.models.manifest import ManifestEntry
from storage.mover import (
    copy_batch,
    default_job_id,
    finish_copy,
    job_progress,
    pending_batches,
    plan_copy,
    run_copy,
)
from storage.settings import reset_settings

COPIER = """
import sys
from storage.mover import run_copy
run_copy(sys.argv[1], sys.argv[2], db_url=sys.argv[3], workers=2, bandwidth_limit=4_000_000)
"""


def _verified_files(db_url: str, job_id: str) -> int:
    with session_scope(db_url) as s:
        return int(
            s.scalar(
                select(func.count()).where(
                    ManifestEntry.job_id == job_id,
                    ManifestEntry.kind == "file",
                    ManifestEntry.state == "done",
                )
            )
            or 0
        )


def _tree(root: Path, files: int, size: int) -> None:
    for i in range(files):
        d = root / f"d{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04d}.bin").write_bytes(os.urandom(size))


@pytest.mark.slow
def test_kill_9_mid_copy_then_rerun_skips_verified(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHAREMIG_BATCH_MAX_FILES", "16")
    reset_settings()
    src, dst = tmp_path / "src", tmp_path / "dst"
    _tree(src, 300, 64 * 1024)  # ~19 MiB at 4 MB/s: about five seconds of copying
    job_id = default_job_id(str(src), str(dst))
    proc = subprocess.Popen(
        [sys.executable, "-c", COPIER, str(src), str(dst), db_url],
        start_new_session=True,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 60
        while _verified_files(db_url, job_id) < 40:
            assert proc.poll() is None, "the copy finished before it could be killed"
            assert time.monotonic() < deadline, "no progress within 60 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    verified = _verified_files(db_url, job_id)
    assert 40 <= verified < 300

    summary = run_copy(str(src), str(dst), db_url=db_url, workers=2)

    assert summary.complete, summary.failed
    assert summary.files_already_verified == verified
    assert summary.files_copied == 300 - verified
    for i in range(0, 300, 37):
        rel = Path(f"d{i % 7}") / f"f{i:04d}.bin"
        assert (dst / rel).read_bytes() == (src / rel).read_bytes()


def test_batches_from_many_threads_count_every_file_once(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHAREMIG_BATCH_MAX_FILES", "5")
    reset_settings()
    src, dst = tmp_path / "src", tmp_path / "dst"
    _tree(src, 120, 3000)
    plan = plan_copy("job", str(src), str(dst), db_url=db_url)
    batches = pending_batches("job", db_url=db_url)
    assert len(batches) == plan.batches_pending > 20
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda b: copy_batch("job", b, db_url=db_url), batches))
    assert sum(r.files_copied for r in results) == 120
    assert finish_copy("job", db_url=db_url).complete
    p = job_progress("job", db_url=db_url)
    assert (p.files_verified, p.bytes_verified, p.percent) == (120, 120 * 3000, 100)
    assert p.entries_done == p.entries_planned == 120 + 7 + 1
    assert pending_batches("job", db_url=db_url) == []

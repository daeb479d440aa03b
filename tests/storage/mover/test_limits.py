"""The operator's rate limits hold: the walk's entries per second, the copy's bytes per second."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from storage.mover import plan_copy, run_copy
from storage.settings import reset_settings


def test_walk_limit_paces_the_plan(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    for i in range(900):
        d = src / f"d{i % 8}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_bytes(b"x")
    monkeypatch.setenv("SHAREMIG_WALK_LIMIT_ENTRIES", "300")
    reset_settings()

    started = time.monotonic()
    plan = plan_copy("paced", str(src), str(tmp_path / "dst"), db_url=db_url)
    elapsed = time.monotonic() - started

    assert plan.files == 900
    # One second of burst (300 entries), then the other ~608 at 300 a second.
    assert elapsed >= 1.8, f"{plan.entries} entries walked in {elapsed:.2f}s despite the limit"


def test_bandwidth_limit_holds_across_many_small_batches(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40 files in batches of 4: each batch alone is far below a second's allowance, so a
    # throttle made per batch would never slow the copy down.
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i:02d}").write_bytes(bytes([i]) * 65536)
    monkeypatch.setenv("SHAREMIG_BATCH_MAX_FILES", "4")
    reset_settings()

    started = time.monotonic()
    summary = run_copy(str(src), str(tmp_path / "dst"), db_url=db_url, bandwidth_limit=1_000_000)
    elapsed = time.monotonic() - started

    assert summary.complete and summary.bytes_copied == 40 * 65536
    # 2.6 MB at 1 MB/s, less at most one second of burst.
    assert elapsed >= 1.3, f"2.6 MB copied in {elapsed:.2f}s under a 1 MB/s limit"

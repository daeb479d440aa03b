"""`SHAREMIG_WALK_LIMIT_ENTRIES` paces the walk, so a plan never floods a busy filer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from storage.mover import plan_copy
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

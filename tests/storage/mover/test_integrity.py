"""A destination corrupted between write and verify is caught, re-copied, or reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage.errors import CancelledError, DataIntegrityError
from storage.mover import batch as batch_mod
from storage.mover import copy_batch, job_progress, pending_batches, plan_copy, run_copy
from tests.kit.mover import make_place


def _flip_first_byte(fs_kind: str, place_fs: object, path: bytes) -> None:
    if fs_kind == "file":
        with open(path, "r+b") as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 0xFF]))
        return
    fs = place_fs
    name = os.fsdecode(path)
    data = fs.cat_file(name)  # type: ignore[attr-defined]
    fs.pipe_file(name, bytes([data[0] ^ 0xFF]) + data[1:])  # type: ignore[attr-defined]


@pytest.mark.parametrize("dst_kind", ["file", "memory"])
def test_corruption_once_is_recopied(
    dst_kind: str, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_place("file", tmp_path, "src")
    dst = make_place(dst_kind, tmp_path, "dst")
    src.write("victim.bin", b"v" * 5000)
    src.write("other.txt", b"fine")
    hits: list[bytes] = []

    def corrupt_once(path: bytes) -> None:
        if path.endswith(b"victim.bin") and not hits:
            hits.append(path)
            _flip_first_byte(dst_kind, dst.fs, path)

    monkeypatch.setattr(batch_mod, "BEFORE_VERIFY", corrupt_once)
    summary = run_copy(src.url, dst.url, db_url=db_url, workers=1)
    assert hits, "the corruption hook never ran"
    assert summary.complete
    assert summary.recopies == 1
    assert dst.read_all()["victim.bin"] == b"v" * 5000


@pytest.mark.parametrize("dst_kind", ["file", "memory"])
def test_persistent_corruption_fails_naming_the_file(
    dst_kind: str, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_place("file", tmp_path, "src")
    dst = make_place(dst_kind, tmp_path, "dst")
    src.write("sub/victim.bin", b"v" * 5000)
    src.write("ok.txt", b"fine")

    def corrupt_always(path: bytes) -> None:
        if path.endswith(b"victim.bin"):
            _flip_first_byte(dst_kind, dst.fs, path)

    monkeypatch.setattr(batch_mod, "BEFORE_VERIFY", corrupt_always)
    plan_copy("job", src.url, dst.url, db_url=db_url)
    with pytest.raises(DataIntegrityError, match=r"sub/victim\.bin"):
        for batch in pending_batches("job", db_url=db_url):
            copy_batch("job", batch, db_url=db_url)
    progress = job_progress("job", db_url=db_url)
    assert progress.failed == 1
    assert progress.files_verified == 1  # ok.txt still made it
    assert progress.percent < 100


def test_should_stop_cancels_and_keeps_what_was_verified(tmp_path: Path, db_url: str) -> None:
    src = make_place("file", tmp_path, "src")
    for i in range(20):
        src.write(f"f{i:02d}", b"x" * 100)
    plan_copy("job", src.url, str(tmp_path / "dst"), db_url=db_url)
    (batch,) = pending_batches("job", db_url=db_url)
    calls = 0

    def stop_after_ten() -> bool:
        nonlocal calls
        calls += 1
        return calls > 10

    with pytest.raises(CancelledError):
        copy_batch("job", batch, db_url=db_url, should_stop=stop_after_ten)
    first = job_progress("job", db_url=db_url).files_verified
    assert 0 < first < 20
    result = copy_batch("job", batch, db_url=db_url)
    assert result.files_already_verified == first
    assert result.files_copied == 20 - first

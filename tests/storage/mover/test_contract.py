"""One suite over every filesystem pair: copy + verify, re-run, incremental sync, progress."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.mover import run_copy
from storage.mover.results import Progress
from tests.kit.mover import Place, make_place

PAIRS = [
    ("file", "file"),
    ("file", "memory"),
    ("memory", "file"),
    ("file", "s3"),
    ("s3", "file"),
]

TREE = {
    "a.txt": b"hello\n",
    "empty": b"",
    "big.bin": bytes(range(256)) * (3 * 4096 + 7),  # > the 1 MiB copy buffer
    "d1/d2/deep.txt": b"deep" * 1000,
    "we ird [x]*?.txt": b"glob characters and spaces",
    "d3/caf\u00e9.txt": b"utf-8 name",
}


@pytest.fixture(params=PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Place, Place]:
    src_kind, dst_kind = request.param
    bucket = None
    if "s3" in request.param:
        bucket = request.getfixturevalue("s3_config")
    src = make_place(src_kind, tmp_path, "src", bucket)
    dst = make_place(dst_kind, tmp_path, "dst", bucket)
    for rel, data in TREE.items():
        src.write(rel, data)
    return src, dst


def test_copy_verifies_every_file_and_rerun_copies_nothing(
    pair: tuple[Place, Place], db_url: str
) -> None:
    src, dst = pair
    first = run_copy(src.url, dst.url, db_url=db_url, workers=2)
    assert first.complete, first.failed
    assert first.files == first.files_verified == first.files_copied == len(TREE)
    assert first.bytes_verified == sum(len(v) for v in TREE.values())
    assert dst.read_all() == TREE

    again = run_copy(src.url, dst.url, db_url=db_url, workers=2)
    assert again.complete
    assert again.files_copied == 0
    assert again.files_already_verified == len(TREE)
    assert again.job_id == first.job_id


def test_incremental_run_copies_only_changes_and_removes_vanished(
    pair: tuple[Place, Place], db_url: str
) -> None:
    src, dst = pair
    assert run_copy(src.url, dst.url, db_url=db_url).complete
    src.write("a.txt", b"changed, and longer than before\n")
    src.rm("d1/d2/deep.txt")
    src.write("new/file.txt", b"new")

    sync = run_copy(src.url, dst.url, db_url=db_url)

    assert sync.complete, sync.failed
    assert sync.files_copied == 2
    assert sync.removed >= 1
    expected = {k: v for k, v in TREE.items() if k != "d1/d2/deep.txt"}
    expected.update({"a.txt": b"changed, and longer than before\n", "new/file.txt": b"new"})
    assert dst.read_all() == expected


def test_progress_is_monotonic_and_ends_at_100(pair: tuple[Place, Place], db_url: str) -> None:
    src, dst = pair
    seen: list[Progress] = []
    summary = run_copy(src.url, dst.url, db_url=db_url, workers=1, progress=seen.append)
    assert summary.complete
    percents = [p.percent for p in seen]
    assert percents == sorted(percents)
    assert all(0 <= p <= 100 for p in percents)
    assert percents[-1] == 100
    assert seen[-1].files_verified == len(TREE)
    assert seen[-1].bytes_verified <= seen[-1].bytes_planned

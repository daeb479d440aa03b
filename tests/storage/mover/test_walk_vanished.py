"""Entries that vanish under the walk are counted and named, never skipped in silence."""

from __future__ import annotations

import os
from pathlib import Path

from storage.mover.walk import WalkProblems, walk_local


def test_a_file_and_a_directory_removed_under_the_walk_are_counted(tmp_path: Path) -> None:
    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
        for i in range(3):
            (tmp_path / d / f"f{i}").write_bytes(b"x")
    problems = WalkProblems()
    seen: list[bytes] = []
    for entry in walk_local(os.fsencode(tmp_path), problems):
        seen.append(entry.path)
        if entry.path == b"a":
            # Listed with its siblings, removed before the walk lists it: a client's rm -r.
            for i in range(3):
                (tmp_path / "b" / f"f{i}").unlink()
            (tmp_path / "b").rmdir()
    assert b"b" in seen and not any(p.startswith(b"b/") for p in seen)
    assert problems.vanished == 1
    assert problems.vanished_paths == [b"b"]
    assert problems.unreadable == 0


def test_plan_summary_counts_what_vanished_between_two_walks(tmp_path: Path, db_url: str) -> None:
    from storage.mover import plan_copy

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for i in range(4):
        (src / f"f{i}").write_bytes(b"y" * i)
    first = plan_copy("job-vanish", src.as_uri(), dst.as_uri(), db_url=db_url)
    assert first.vanished == 0 and first.vanished_while_walking == 0
    (src / "f1").unlink()
    (src / "f2").unlink()
    again = plan_copy("job-vanish", src.as_uri(), dst.as_uri(), db_url=db_url)
    assert again.vanished == 2

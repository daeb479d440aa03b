"""Local→local keeps everything: the awkward `small` tree compares identical under treecmp."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from storage.mover import run_copy
from tests.kit.bench_kit import gen_tree, treecmp

AS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen") / "small"
    gen_tree(root)
    return root


def test_small_awkward_tree_is_identical(small_tree: Path, tmp_path: Path, db_url: str) -> None:
    dst = tmp_path / "dst"
    summary = run_copy(str(small_tree), str(dst), db_url=db_url, workers=2)
    assert summary.complete, summary.failed
    assert summary.files_verified == summary.files > 2000
    cmp = treecmp(small_tree, dst, owner=AS_ROOT)
    assert cmp.returncode == 0, cmp.stdout[-3000:]


def test_special_files_never_hang_and_are_recreated_or_skipped(tmp_path: Path, db_url: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    (src / "file").write_bytes(b"data")
    try:
        summary = run_copy(str(src), str(tmp_path / "dst"), db_url=db_url, workers=1)
    finally:
        sock.close()
    assert summary.complete, summary.failed
    assert stat.S_ISFIFO(os.lstat(tmp_path / "dst" / "fifo").st_mode)
    sock_copy = tmp_path / "dst" / "sock"
    # A socket node can be recreated (mknod) or, where that is refused, reported as skipped.
    assert stat.S_ISSOCK(os.lstat(sock_copy).st_mode) or summary.skipped == 1
    assert (tmp_path / "dst" / "file").read_bytes() == b"data"


def test_names_that_are_not_utf8_or_hold_newlines(tmp_path: Path, db_url: str) -> None:
    src = os.fsencode(tmp_path / "src")
    os.mkdir(src)
    names = [b"latin1-\xe9", b"line\nbreak", b"\xff\xfe\xfd", b"star*?[x]", b"-leading"]
    for i, name in enumerate(names):
        with open(os.path.join(src, name), "wb") as f:
            f.write(bytes([i]) * (i + 1))
    os.symlink(b"\xff-dangling\ntarget", os.path.join(src, b"link\xff"))
    dst = tmp_path / "dst"
    assert run_copy(os.fsdecode(src), str(dst), db_url=db_url).complete
    cmp = treecmp(Path(os.fsdecode(src)), dst, owner=AS_ROOT)
    assert cmp.returncode == 0, cmp.stdout

"""A destination damaged after its files were verified is found and copied again."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec

from storage.mover import default_job_id, run_copy
from storage.mover.audit import requeue_damaged


def _tree(root: Path) -> None:
    for i in range(40):
        d = root / f"d{i % 4}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:02d}.bin").write_bytes(bytes([i]) * (100 + i))
    (root / "link").symlink_to("d0/f00.bin")


def test_local_destination_damage_is_requeued_and_repaired(tmp_path: Path, db_url: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _tree(src)
    assert run_copy(str(src), str(dst), db_url=db_url).complete
    job = default_job_id(str(src), str(dst))
    assert requeue_damaged(job, str(dst), db_url=db_url) == []

    (dst / "d1/f01.bin").unlink()
    (dst / "d2/f02.bin").write_bytes(b"\x02" * 101)  # one byte short
    (dst / "d3/f03.bin").write_bytes(b"X" * 103)  # same size, but written now (mtime)
    (dst / "link").unlink()
    (dst / "link").write_bytes(b"not a link")

    damaged = requeue_damaged(job, str(dst), db_url=db_url)
    assert sorted(damaged) == [b"d1/f01.bin", b"d2/f02.bin", b"d3/f03.bin", b"link"]

    again = run_copy(str(src), str(dst), db_url=db_url)
    assert again.complete and again.files_copied == 3
    for rel in ("d1/f01.bin", "d2/f02.bin", "d3/f03.bin"):
        assert (dst / rel).read_bytes() == (src / rel).read_bytes()
    assert (dst / "link").is_symlink()
    assert requeue_damaged(job, str(dst), db_url=db_url) == []


def test_object_store_destination_damage_is_requeued(tmp_path: Path, db_url: str) -> None:
    src = tmp_path / "src"
    _tree(src)
    dst = f"memory://audit-{uuid.uuid4().hex[:8]}"
    assert run_copy(str(src), dst, db_url=db_url).complete
    fs = fsspec.filesystem("memory")
    root = dst.removeprefix("memory:/")
    fs.rm(f"{root}/d1/f05.bin")
    fs.pipe(f"{root}/d2/f06.bin", b"short")

    # `sharemig copy` run again finds and repairs the damage by itself.
    again = run_copy(str(src), dst, db_url=db_url)
    assert (again.repaired, again.files_copied, again.complete) == (2, 2, True)
    assert fs.cat(f"{root}/d2/f06.bin") == (src / "d2/f06.bin").read_bytes()

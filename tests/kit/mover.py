"""Test helpers for the mover: trees on any filesystem (local, S3 through the fixtures of
tests/storage/mover/conftest.py, memory)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec


@dataclass
class Place:
    """Where a test tree lives: its URL, and the filesystem + root to write/read it directly."""

    url: str
    fs: Any
    root: str

    def write(self, rel: str, data: bytes) -> None:
        path = f"{self.root}/{rel}"
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as f:
            f.write(data)

    def read_all(self) -> dict[str, bytes]:
        """Every file under the root, by path relative to it."""
        out: dict[str, bytes] = {}
        base = self.fs._strip_protocol(self.root).rstrip("/")
        for path in self.fs.find(base):
            with self.fs.open(path, "rb") as f:
                out[path[len(base) + 1 :]] = f.read()
        return out

    def rm(self, rel: str) -> None:
        self.fs.rm(f"{self.root}/{rel}")


def make_place(kind: str, tmp_path: Path, name: str, bucket: str | None = None) -> Place:
    if kind == "file":
        root = tmp_path / name
        root.mkdir()
        return Place(str(root), fsspec.filesystem("file"), str(root))
    if kind == "memory":
        root = f"/{name}-{uuid.uuid4().hex[:8]}"
        fs = fsspec.filesystem("memory")
        fs.mkdir(root)
        return Place(f"memory://{root}", fs, root)
    if kind == "s3":
        assert bucket is not None
        root = f"{bucket}/{name}"
        return Place(f"s3://{root}", fsspec.filesystem("s3", skip_instance_cache=True), root)
    raise ValueError(kind)

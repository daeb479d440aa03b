"""The generic path: any pair that is not local→local, through fsspec `open()` streams.

Contents are hashed while streamed and the destination is read back through its own
filesystem. Never `fs.checksum()`: across filesystems it is not a content hash.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable
from typing import Any

import xxhash

from storage.errors import CancelledError
from storage.mover.endpoints import Endpoint
from storage.mover.local_copy import BUF_SIZE, STOP_CHECK_BYTES, FileRow, SourceChanged
from storage.mover.throttle import Pacer

OBJECT_STORES = frozenset({"s3", "s3a", "gcs", "gs", "az", "abfs", "adl", "oss"})


def _protocols(fs: Any) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


class StreamCopier:
    """Copies entries of one batch between any two fsspec filesystems; one per thread."""

    def __init__(
        self,
        source: Endpoint,
        dest: Endpoint,
        *,
        throttle: Pacer | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.source = source
        self.dest = dest
        self.throttle = throttle
        self.should_stop = should_stop
        self.lost: dict[str, int] = {}
        self.object_store = bool(OBJECT_STORES.intersection(_protocols(dest.fs)))

    def _lose(self, what: str) -> None:
        self.lost[what] = self.lost.get(what, 0) + 1

    def _checkpoint(self, nbytes: int) -> None:
        if self.should_stop is not None and self.should_stop():
            raise CancelledError("copy stopped on request")
        if self.throttle is not None:
            self.throttle.consume(nbytes)

    def _open_dest(self, path: str) -> Any:
        try:
            return self.dest.fs.open(path, "wb")
        except FileNotFoundError:
            self.dest.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            return self.dest.fs.open(path, "wb")

    def copy_file(self, row: FileRow) -> str:
        """Stream one file, hashing on the way; returns the source hash."""
        spath = self.source.fs_path(row.path)
        dpath = self.dest.fs_path(row.path)
        h = xxhash.xxh3_128()
        total = since_check = 0
        try:
            src = self.source.fs.open(spath, "rb")
        except FileNotFoundError as exc:
            raise SourceChanged("vanished") from exc
        with src, self._open_dest(dpath) as out:
            while True:
                chunk = src.read(BUF_SIZE)
                if not chunk:
                    break
                h.update(chunk)
                out.write(chunk)
                total += len(chunk)
                since_check += len(chunk)
                if since_check >= STOP_CHECK_BYTES:
                    self._checkpoint(since_check)
                    since_check = 0
        if since_check:
            self._checkpoint(since_check)
        if total != row.size:
            raise SourceChanged("size changed while being copied")
        self._count_losses(row)
        return h.hexdigest()

    def _count_losses(self, row: FileRow) -> None:
        if not self.source.local or self.dest.local:
            return
        self._lose("mode")
        self._lose("mtime")
        if row.blocks * 512 < row.size:
            self._lose("sparse")

    def hash_back(self, row: FileRow) -> str:
        h = xxhash.xxh3_128()
        with self.dest.fs.open(self.dest.fs_path(row.path), "rb") as f:
            while True:
                chunk = f.read(BUF_SIZE)
                if not chunk:
                    break
                h.update(chunk)
        return h.hexdigest()

    def make_dir(self, row: FileRow) -> None:
        if self.object_store:
            # Object stores have no directories: they exist only through the files in them.
            self._lose("dir")
            return
        self.dest.fs.makedirs(self.dest.fs_path(row.path), exist_ok=True)

    def skip_reason(self, row: FileRow) -> str:
        kind = "symlink" if stat.S_ISLNK(row.mode) else "special"
        self._lose(kind)
        return f"{kind} not kept: {self.dest.url} cannot hold it ({os.fsdecode(row.path)!r})"

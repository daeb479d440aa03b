"""Stream a source tree as entries (relative bytes paths + metadata), one directory at a time.

Memory stays bounded by the largest directory, never the tree: the stack holds directory
paths still to list, and entries are yielded as soon as their directory is read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.errors import InvalidInputError
from storage.mover.endpoints import Endpoint

FILE, DIR, SYMLINK, SPECIAL, HARDLINK = "file", "dir", "symlink", "special", "hardlink"


@dataclass(slots=True)
class WalkEntry:
    path: bytes
    kind: str
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    mode: int = 0
    uid: int | None = None
    gid: int | None = None
    blocks: int = 0
    rdev: int = 0
    link_target: bytes | None = None
    inode: tuple[int, int] | None = None
    """(dev, ino) of a regular file with more than one name, to find its hard links."""


SAMPLES = 10
"""Paths kept per kind of problem, for messages (the counts are exact)."""


@dataclass(slots=True)
class WalkProblems:
    """What a walk could not see, counted rather than skipped in silence.

    `vanished`: entries listed but gone before their `lstat`, and directories gone before
    they were listed (a client deleting under the walk; phase 1 only, the switchover's source
    is frozen). `unreadable`: directories the walk may not list (their contents would not be
    migrated)."""

    vanished: int = 0
    vanished_paths: list[bytes] = field(default_factory=list)
    unreadable: int = 0
    unreadable_paths: list[tuple[bytes, str]] = field(default_factory=list)

    def gone(self, rel: bytes) -> None:
        self.vanished += 1
        if len(self.vanished_paths) < SAMPLES:
            self.vanished_paths.append(rel)

    def denied(self, rel: bytes, why: str) -> None:
        self.unreadable += 1
        if len(self.unreadable_paths) < SAMPLES:
            self.unreadable_paths.append((rel, why))


def kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    return SPECIAL


def _local_entry(rel: bytes, path: bytes, st: os.stat_result) -> WalkEntry:
    kind = kind_of(st.st_mode)
    return WalkEntry(
        path=rel,
        kind=kind,
        size=st.st_size if kind == FILE else 0,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        mode=st.st_mode,
        uid=st.st_uid,
        gid=st.st_gid,
        blocks=st.st_blocks,
        rdev=st.st_rdev if kind == SPECIAL else 0,
        link_target=os.readlink(path) if kind == SYMLINK else None,
        inode=(st.st_dev, st.st_ino) if kind == FILE and st.st_nlink > 1 else None,
    )


def walk_local(root: bytes, problems: WalkProblems | None = None) -> Iterator[WalkEntry]:
    """Every entry under `root` (the root itself first, as b""), without following symlinks.

    Entries that vanish under the walk are counted in `problems`; so are directories it may
    not list, which without `problems` raise `PermissionError` as before."""
    seen = problems if problems is not None else WalkProblems()
    try:
        st = os.lstat(root)
    except FileNotFoundError as exc:
        raise InvalidInputError(f"source {os.fsdecode(root)!r} does not exist") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidInputError(f"source {os.fsdecode(root)!r} is not a directory")
    yield _local_entry(b"", root, st)
    stack: list[bytes] = [b""]
    while stack:
        rel_dir = stack.pop()
        children: list[bytes] = []
        prefix = rel_dir + b"/" if rel_dir else b""
        try:
            listing = os.scandir(os.path.join(root, rel_dir) if rel_dir else root)
        except (FileNotFoundError, NotADirectoryError):
            seen.gone(rel_dir)  # removed (or replaced) after its parent was listed
            continue
        except PermissionError as exc:
            if problems is None:
                raise
            problems.denied(rel_dir, exc.strerror or str(exc))
            continue
        with listing as it:
            for de in it:
                rel = prefix + de.name
                try:
                    entry = _local_entry(rel, de.path, de.stat(follow_symlinks=False))
                except FileNotFoundError:
                    seen.gone(rel)  # vanished while listing; the next plan sees the tree as it is
                    continue
                if entry.kind == DIR:
                    children.append(rel)
                yield entry
        # Reversed so the pop order (and so the batches) follows the listing order.
        stack.extend(reversed(children))


def _mtime_ns(info: dict[str, Any]) -> int:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return int(value.timestamp() * 1_000_000_000)
        if isinstance(value, int | float):
            return int(value * 1_000_000_000)
    return 0


def walk_fsspec(endpoint: Endpoint) -> Iterator[WalkEntry]:
    """Every entry under an fsspec root, listed directory by directory (no listings cache)."""
    fs = endpoint.fs
    root = endpoint.root
    if not fs.isdir(root):
        raise InvalidInputError(f"source {endpoint.url!r} is not a directory")
    yield WalkEntry(path=b"", kind=DIR, mode=stat.S_IFDIR | 0o755)
    prefix = root.rstrip("/") + "/" if root else ""
    stack: list[str] = [root]
    while stack:
        directory = stack.pop()
        children: list[str] = []
        for info in fs.ls(directory, detail=True):
            name: str = info["name"]
            if not name.startswith(prefix) or name.rstrip("/") == directory.rstrip("/"):
                continue  # some backends list the directory itself
            rel = os.fsencode(name[len(prefix) :].rstrip("/"))
            if info.get("type") == "directory":
                children.append(name.rstrip("/"))
                yield WalkEntry(path=rel, kind=DIR, mode=stat.S_IFDIR | 0o755)
            else:
                yield WalkEntry(
                    path=rel,
                    kind=FILE,
                    size=int(info.get("size") or 0),
                    mtime_ns=_mtime_ns(info),
                    mode=stat.S_IFREG | 0o644,
                )
        stack.extend(reversed(children))


def walk(endpoint: Endpoint, problems: WalkProblems | None = None) -> Iterator[WalkEntry]:
    if endpoint.local:
        return walk_local(endpoint.root_bytes, problems)
    return walk_fsspec(endpoint)

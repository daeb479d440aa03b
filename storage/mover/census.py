"""Count a tree the way the mover would copy it (no manifest, nothing written)."""

from __future__ import annotations

from dataclasses import dataclass

from storage.mover.endpoints import open_endpoint
from storage.mover.walk import DIR, FILE, SPECIAL, SYMLINK, walk


@dataclass(frozen=True)
class TreeCount:
    entries: int
    files: int
    """Regular files with data to copy (a hard link's further names are not counted)."""
    bytes: int
    dirs: int
    links: int
    """Symbolic links and further names of hard-linked files."""
    special: int
    """FIFOs, sockets, devices: the mover skips them."""


def count_tree(source_url: str) -> TreeCount:
    """One streamed walk of `source_url` (never the whole tree in memory but hard-link ids)."""
    files = entries = size = dirs = links = special = 0
    linked: set[tuple[int, int]] = set()
    for entry in walk(open_endpoint(source_url)):
        entries += 1
        if entry.inode is not None:
            if entry.inode in linked:
                links += 1  # another name of a file already counted: a hard link, no data
                continue
            linked.add(entry.inode)
        if entry.kind == FILE:
            files += 1
            size += entry.size
        elif entry.kind == DIR:
            dirs += 1
        elif entry.kind == SYMLINK:
            links += 1
        elif entry.kind == SPECIAL:
            special += 1
    return TreeCount(entries, files, size, dirs, links, special)

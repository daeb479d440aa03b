"""A small, seeded, realistic share tree for `sharemig demo`: team projects, home dirs, reports.

Text files are compressible words, media and archives are random bytes; directories nest a
few levels; mtimes spread over the past year. Deterministic for a given seed.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

_WORDS = [
    "share",
    "pool",
    "migration",
    "snapshot",
    "export",
    "quota",
    "backup",
    "replica",
    "volume",
    "tenant",
    "project",
    "report",
    "budget",
    "review",
    "draft",
    "final",
    "meeting",
    "notes",
    "design",
    "storage",
    "network",
    "cluster",
    "node",
    "release",
    "plan",
    "schedule",
    "owner",
    "access",
    "rule",
    "capacity",
    "latency",
    "throughput",
    "archive",
]
_PROJECTS = ("atlas", "borealis", "cygnus", "draco")
_USERS = ("alice", "bob", "carol", "dave", "erin")


@dataclass(frozen=True)
class TreeStats:
    files: int
    directories: int
    bytes: int


def _text(rng: random.Random, size: int) -> bytes:
    words: list[str] = []
    length = 0
    while length < size:
        line = " ".join(rng.choices(_WORDS, k=rng.randint(6, 14)))
        words.append(line)
        length += len(line) + 1
    return ("\n".join(words) + "\n").encode()[:size]


def _plan(rng: random.Random, scale: float) -> list[tuple[str, int, bool]]:
    """(relative path, size, is_text) for every file."""
    kib = 1024

    def n(count: int) -> int:
        return max(1, round(count * scale))

    def big(size_kib: int) -> int:
        # The few large files shrink with a small scale too (the bytes are mostly theirs).
        return max(1, round(size_kib * min(scale, 1.0)))

    files: list[tuple[str, int, bool]] = []

    def add(path: str, low_kib: int, high_kib: int, text: bool) -> None:
        files.append((path, rng.randint(low_kib, high_kib) * kib, text))

    for project in _PROJECTS:
        base = f"projects/{project}"
        for i in range(n(25)):
            pkg = rng.choice(("core", "api", "cli", "util/io", "util/text"))
            add(f"{base}/src/{pkg}/mod_{i:03d}.py", 1, 24, True)
        for i in range(n(8)):
            add(f"{base}/docs/chapter-{i:02d}.md", 2, 40, True)
        for i in range(n(6)):
            add(f"{base}/data/samples-{i:02d}.csv", 50, 400, True)
        add(f"{base}/data/model.bin", big(1024), big(3072), False)
    for user in _USERS:
        for i in range(n(10)):
            add(f"home/{user}/Documents/note-{i:02d}.txt", 1, 16, True)
        for _ in range(n(6)):
            year = rng.choice((2023, 2024, 2025))
            add(f"home/{user}/Pictures/{year}/IMG_{rng.randint(1000, 9999)}.jpg", 200, 900, False)
    for year in (2024, 2025):
        for q in range(1, 5):
            for i in range(n(3)):
                add(f"shared/reports/{year}/Q{q}/report-{i}.pdf", 80, 600, False)
    add("shared/archive/backup-2024.tar.gz", big(4096), big(4096), False)
    add("shared/README.txt", 2, 2, True)
    return files


def write_demo_tree(root: Path, *, seed: int = 8, scale: float = 1.0) -> TreeStats:
    """Fill `root` (a share's directory) and return what was written: about 270 files and
    45 MiB at scale 1; `scale` multiplies the file counts (and, below 1, the large files)."""
    rng = random.Random(seed)
    now = time.time()
    total = 0
    dirs: set[Path] = set()
    plan = _plan(rng, scale)
    for rel, size, is_text in plan:
        path = root / rel
        if path.parent not in dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            dirs.add(path.parent)
        path.write_bytes(_text(rng, size) if is_text else rng.randbytes(size))
        stamp = now - rng.uniform(0, 365 * 86400)
        os.utime(path, (stamp, stamp))
        total += size
    (root / "shared" / "incoming").mkdir(parents=True, exist_ok=True)  # an empty directory
    all_dirs = {d for p in dirs for d in (p, *p.parents) if d != root and root in d.parents}
    return TreeStats(files=len(plan), directories=len(all_dirs) + 1, bytes=total)

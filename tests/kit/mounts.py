"""Small real filesystems a test mounts: a tmpfs of a given size (root only)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NO_TMPFS = "cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)"


def mount_tmpfs(path: Path, size: str) -> str:
    """Mount a tmpfs of `size` at `path` (made if missing); "" on success, else why not."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return ""
    return proc.stderr.strip() or f"mount exited {proc.returncode}"


def unmount(path: Path) -> None:
    """Lazy unmount: a process still inside lets go later, the test goes on now."""
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs at `path` for the block (the test skips, saying why, where none can be
    mounted); unmounted after it."""
    why = mount_tmpfs(path, size)
    if why:
        pytest.skip(f"{NO_TMPFS}: {why}")
    try:
        yield path
    finally:
        unmount(path)

"""A real freeze for a share instance on a local directory: a read-only bind mount over itself.

Root ignores mode bits, and every sharemig process runs as root here, so `chmod` is no
freeze. A read-only bind mount refuses writes, creates, renames and unlinks for everyone
(EROFS) while reads keep working. It cannot revoke a descriptor opened for writing before the
freeze; `late_writes` is the cheap check (ctime) for what such a descriptor wrote.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

from storage.errors import FreezeUnavailableError, PermanentError
from storage.mover.throttle import Throttle

MOUNT_TIMEOUT_S = 10.0


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (`\\040`)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mounts_at(path: Path) -> list[tuple[str, str]]:
    """(root within its filesystem, options) of each mount stacked at `path`, oldest first.

    Read from this process's own mount table: the freeze is a property of this host's view
    of the directory, not a liveness check.
    """
    target = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        for line in table:
            fields = line.split()
            if _unescape(fields[4]) == target:
                found.append((_unescape(fields[3]), fields[5]))
    return found


def is_frozen(path: Path) -> bool:
    mounts = _mounts_at(path)
    return bool(mounts) and "ro" in mounts[-1][1].split(",")


def _mount(*args: str) -> None:
    try:
        proc = subprocess.run(
            ["mount", *args], capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FreezeUnavailableError(f"mount {' '.join(args)} failed: {exc}") from exc
    if proc.returncode != 0:
        raise FreezeUnavailableError(
            f"mount {' '.join(args)} failed: {proc.stderr.strip() or proc.returncode}; "
            "freezing a share needs root (CAP_SYS_ADMIN)"
        )


def freeze_dir(path: Path) -> None:
    """Make `path` read-only for every process on this host, reads unchanged. Idempotent."""
    if is_frozen(path):
        return
    if os.geteuid() != 0:
        raise FreezeUnavailableError(
            f"cannot freeze {path}: a read-only bind mount needs root (CAP_SYS_ADMIN)"
        )
    target = os.path.realpath(path)
    _mount("--bind", target, target)
    try:
        _mount("-o", "remount,bind,ro", target, target)
    except FreezeUnavailableError:
        lift_dir(path)
        raise


# Bind mounts one freeze may have stacked (each lift undoes every one of them).
LIFT_ATTEMPTS = 16


def lift_dir(path: Path) -> None:
    """Remove the freeze (every read-only bind sharemig stacked at `path`). Idempotent."""
    target = os.path.realpath(path)
    for _ in range(LIFT_ATTEMPTS):
        if not (_mounts_at(path) and _is_self_bind(path)):
            return
        proc = subprocess.run(
            ["umount", target], capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S
        )
        if proc.returncode != 0:
            if "not mounted" in proc.stderr.lower():
                continue  # another process lifted it between our look and the umount
            # A process with its working directory inside keeps the mount busy; a lazy
            # unmount detaches it now and lets that process finish on the old view.
            busy = "busy" in proc.stderr.lower()
            if not busy:
                raise PermanentError(f"umount {target} failed: {proc.stderr.strip()}")
            subprocess.run(["umount", "-l", target], timeout=MOUNT_TIMEOUT_S, check=False)
    raise PermanentError(f"umount {target}: still mounted after {LIFT_ATTEMPTS} unmounts")


def _is_self_bind(path: Path) -> bool:
    """The top mount at `path` is a read-only bind (ours), not a filesystem mounted there."""
    mounts = _mounts_at(path)
    return bool(mounts) and "ro" in mounts[-1][1].split(",") and mounts[-1][0] != "/"


def late_writes(
    path: Path, since_ns: int, limit: int = 10, *, entries_per_s: int | None = None
) -> list[bytes]:
    """Up to `limit` paths (relative, bytes) changed after `since_ns` (ctime): what a writer
    holding a descriptor from before the freeze may have written since. `entries_per_s`
    paces the walk like the planning walk (`SHAREMIG_WALK_LIMIT_ENTRIES`)."""
    throttle = Throttle(entries_per_s) if entries_per_s else None
    found: list[bytes] = []
    stack = [os.fsencode(path)]
    root = stack[0]
    while stack and len(found) < limit:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            raise
        for entry in entries:
            if throttle is not None:
                throttle.consume(1)
            st = entry.stat(follow_symlinks=False)
            if st.st_ctime_ns > since_ns:
                found.append(os.path.relpath(entry.path, root))
                if len(found) >= limit:
                    break
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return found


def frozen_under(root: Path) -> list[Path]:
    """Every frozen directory at or below `root` (what `lift_dir` would lift)."""
    prefix = os.path.realpath(root).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        for line in table:
            fields = line.split()
            point = _unescape(fields[4])
            if (point + "/").startswith(prefix) and "ro" in fields[5].split(","):
                found.append(Path(point))
    return [p for p in found if _is_self_bind(p)]

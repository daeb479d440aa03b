"""The btrfs commands the btrfs driver uses, each with a timeout and errors that name the step.

Every call goes through `run`: a `btrfs` subprocess whose failure becomes a sharemig error
(`TransientError` for a timeout or a busy filesystem, `CapacityError` for a full one,
`PermanentError` otherwise) saying which step failed and where.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from storage.errors import CapacityError, PermanentError, TransientError

COMMAND_TIMEOUT_S = 60.0
BTRFS_FIRST_FREE_OBJECTID = 256
"""The inode number of every subvolume's root directory."""
# BTRFS_IOC_FS_INFO = _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args), the struct is 1 KiB.
_IOC_FS_INFO = (2 << 30) | (1024 << 16) | (0x94 << 8) | 31
# BTRFS_IOC_SUBVOL_GETFLAGS / SETFLAGS = _IOR / _IOW(0x94, 25 / 26, __u64).
_IOC_SUBVOL_GETFLAGS = (2 << 30) | (8 << 16) | (0x94 << 8) | 25
_IOC_SUBVOL_SETFLAGS = (1 << 30) | (8 << 16) | (0x94 << 8) | 26
_SUBVOL_RDONLY = 1 << 1
_FULL_WORDS = ("No space left", "Disk quota exceeded")
_BUSY_WORDS = ("Device or resource busy", "Resource temporarily unavailable")


def run(args: list[str], step: str, *, timeout: float = COMMAND_TIMEOUT_S) -> str:
    """`btrfs ARGS...`; its stdout, or an error naming `step` and the tool's own message."""
    try:
        proc = subprocess.run(
            ["btrfs", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        command = " ".join(args)
        raise TransientError(f"{step}: `btrfs {command}` timed out after {timeout:g}s") from None
    except FileNotFoundError:
        raise PermanentError(f"{step}: no btrfs command (install btrfs-progs)") from None
    if proc.returncode != 0:
        raise step_error(step, proc.stderr or proc.stdout or f"exit {proc.returncode}")
    return proc.stdout


def step_error(step: str, message: str) -> PermanentError | TransientError:
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    text = f"{step} failed: {'; '.join(lines[-3:]) or 'no message'}"
    if any(w in message for w in _FULL_WORDS):
        return CapacityError(f"{text}; free space on the pool or choose another")
    if any(w in message for w in _BUSY_WORDS):
        return TransientError(text)
    return PermanentError(text)


def filesystem_id(path: Path) -> uuid.UUID | None:
    """The btrfs filesystem UUID holding `path`; None when `path` is not on btrfs.

    Each subvolume has its own `st_dev`, so "same filesystem" must compare this instead.
    """
    buf = bytearray(1024)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return None
    try:
        fcntl.ioctl(fd, _IOC_FS_INFO, buf)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise
    finally:
        os.close(fd)
    return uuid.UUID(bytes=bytes(buf[16:32]))


def is_subvolume(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return st.st_ino == BTRFS_FIRST_FREE_OBJECTID and filesystem_id(path) is not None


@dataclass(frozen=True)
class SubvolumeInfo:
    generation: int
    created_generation: int
    received_uuid: str | None
    readonly: bool


def subvolume_info(path: Path) -> SubvolumeInfo:
    out = run(["subvolume", "show", str(path)], f"reading subvolume {path}")
    fields: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key not in fields:
            fields[key] = value.strip()
    received = fields.get("Received UUID", "-")
    return SubvolumeInfo(
        generation=int(fields.get("Generation", "0")),
        created_generation=int(fields.get("Gen at creation", "0")),
        received_uuid=None if received in ("-", "") else received,
        readonly="readonly" in fields.get("Flags", ""),
    )


def create_subvolume(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    run(["subvolume", "create", str(path)], f"creating subvolume {path}")


def snapshot(src: Path, dst: Path, *, readonly: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    args = ["subvolume", "snapshot", *(["-r"] if readonly else []), str(src), str(dst)]
    run(args, f"snapshotting {src} to {dst}")


def delete_subvolume(path: Path) -> None:
    """Delete a subvolume (read-only or not); absent is fine."""
    if not is_subvolume(path):
        return
    run(["subvolume", "delete", str(path)], f"deleting subvolume {path}")


def set_readonly(path: Path, readonly: bool) -> None:
    value = "true" if readonly else "false"
    # -f: a received subvolume made writable loses its received UUID, which is what we want
    # for a subvolume that becomes a live share.
    args = ["property", "set", *([] if readonly else ["-f"]), str(path), "ro", value]
    run(args, f"setting ro={value} on {path}")


def restore_root_times(received: Path, like: Path) -> None:
    """Give a received subvolume's root directory the atime/mtime of the sent snapshot's.

    `btrfs receive` creates new files under temporary names in the subvolume root and renames
    them into place; an incremental stream carries no utimes for a root that did not change,
    so the received root keeps the receive's own time. The flag is flipped with the ioctl, not
    `btrfs property`, because the ioctl keeps the received UUID (later incremental sends find
    their parent by it).
    """
    st = os.stat(like)
    if os.stat(received).st_mtime_ns == st.st_mtime_ns:
        return
    fd = os.open(received, os.O_RDONLY | os.O_DIRECTORY)
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, _IOC_SUBVOL_GETFLAGS, buf)
        flags = struct.unpack("Q", buf)[0]
        fcntl.ioctl(fd, _IOC_SUBVOL_SETFLAGS, struct.pack("Q", flags & ~_SUBVOL_RDONLY))
        try:
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            fcntl.ioctl(fd, _IOC_SUBVOL_SETFLAGS, struct.pack("Q", flags))
    finally:
        os.close(fd)


def sync(path: Path) -> None:
    run(["filesystem", "sync", str(path)], f"committing the filesystem of {path}")


def clear_stale_qgroups(path: Path) -> list[str]:
    """Commit the filesystem of `path` (which wakes the cleaner that drops deleted subvolumes),
    then destroy the qgroups left behind by deleted subvolumes; the ids destroyed.

    Kernels before 6.x keep a deleted subvolume's qgroup as `<stale>` for ever. One whose
    subvolume the cleaner has not dropped yet is busy: it is left for the next call.
    """
    sync(path)
    try:
        proc = subprocess.run(
            ["btrfs", "qgroup", "clear-stale", str(path)],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TransientError(f"clearing stale qgroups of {path} timed out") from None
    if proc.returncode != 0 and not any(w in proc.stderr for w in _BUSY_WORDS):
        raise step_error(f"clearing stale qgroups of {path}", proc.stderr or proc.stdout)
    prefix = "Delete stale qgroup "
    return [ln[len(prefix) :].strip() for ln in proc.stdout.splitlines() if ln.startswith(prefix)]


def stale_qgroups(path: Path) -> list[str]:
    """The level-0 qgroups of the filesystem of `path` whose subvolume is gone."""
    out = run(["qgroup", "show", "--raw", str(path)], f"reading qgroups of {path}")
    return [ln.split()[0] for ln in out.splitlines() if ln.rstrip().endswith("<stale>")]


def quota_problem(path: Path) -> str | None:
    """Why qgroups cannot limit a subvolume below `path`, or None when they can."""
    try:
        run(["qgroup", "show", "--raw", str(path)], f"reading qgroups of {path}", timeout=20)
    except (PermanentError, TransientError) as exc:
        mount = path
        return f"quotas are unavailable ({exc}); run `btrfs quota enable` on the mount of {mount}"
    return None


def set_limit(path: Path, limit_bytes: int | None) -> None:
    """The referenced-bytes limit of a subvolume's qgroup: writes past it fail with EDQUOT."""
    value = "none" if limit_bytes is None else str(limit_bytes)
    run(["qgroup", "limit", value, str(path)], f"limiting {path} to {value} bytes")


@dataclass(frozen=True)
class QgroupUsage:
    referenced: int
    exclusive: int
    limit: int | None


def qgroup_usage(path: Path) -> QgroupUsage:
    """Referenced/exclusive bytes and limit of the subvolume at `path` (committed values).

    Waits for a qgroup rescan in progress (right after `quota enable`, say) to finish first:
    until then the numbers are not whole, and a shrink must not trust them."""
    run(["quota", "rescan", "-W", str(path)], f"waiting for the qgroup rescan of {path}")
    out = run(["qgroup", "show", "-r", "--raw", "-f", str(path)], f"reading the qgroup of {path}")
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0].startswith("0/") and len(cols) >= 4:
            limit = None if cols[3] == "none" else int(cols[3])
            return QgroupUsage(int(cols[1]), int(cols[2]), limit)
    raise PermanentError(f"reading the qgroup of {path} failed: no qgroup in {out!r}")


def pool_problem(root: Path) -> str | None:
    """Why `root` cannot be a btrfs pool (not btrfs, quotas off, not writable), or None."""
    if not root.is_dir():
        return f"{root} is not a directory"
    if filesystem_id(root) is None:
        return f"{root} is not on a btrfs filesystem"
    if not os.access(root, os.W_OK | os.X_OK):
        return f"{root} is not writable by the service (uid {os.geteuid()})"
    return quota_problem(root)

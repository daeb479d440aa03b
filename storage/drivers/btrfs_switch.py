"""Moving subvolumes at a btrfs migration's switchover, and undoing that on cancel.

A read-only subvolume cannot change directory (its `..` is read-only), so snapshots move with
their directory, or each as a new read-only snapshot of itself (O(1), extents shared).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from storage.drivers import btrfs_cli
from storage.drivers.btrfs_journal import BtrfsJournal, Sides, journal_of
from storage.drivers.localfs_journal import updating_model
from storage.errors import InvalidStateError, PermanentError


def not_empty(path: Path) -> bool:
    return path.is_dir() and any(os.scandir(path))


def remove_tree(path: Path) -> None:
    """Delete every subvolume directly below `path`, then `path` itself; absent is fine."""
    if not path.is_dir():
        return
    for child in path.iterdir():
        btrfs_cli.delete_subvolume(child)
    shutil.rmtree(path, ignore_errors=True)


def undo_move(s: Sides, journal: BtrfsJournal) -> None:
    if not btrfs_cli.is_subvolume(s.src) and btrfs_cli.is_subvolume(s.dst):
        os.rename(s.dst, s.src)
    move_snapshots(s.dst_snaps, s.src_snaps, journal.snapshot_ids)


def undo_send(s: Sides, journal: BtrfsJournal) -> None:
    remove_tree(s.recv)
    remove_tree(s.src_work)
    for sid in journal.snapshot_ids:
        btrfs_cli.delete_subvolume(s.dst_snaps / sid)
    if journal.dest_made or (journal.state == "switching" and not_empty(s.dst)):
        btrfs_cli.delete_subvolume(s.dst)  # a half-made switch: the caller's instance was empty


def switch_received(s: Sides, journal: BtrfsJournal, final: int) -> None:
    if not journal_of(s).dest_made:
        drop_empty_instance(s.dst)
        btrfs_cli.snapshot(s.recv / f".final-{final}", s.dst, readonly=False)
        with updating_model(s.journal, BtrfsJournal) as j:
            j.dest_made = True
    btrfs_cli.set_limit(s.dst, journal.dest_limit)
    remove_tree(s.recv)
    remove_tree(s.src_work)


def move_snapshots(src: Path, dst: Path, ids: list[str]) -> None:
    """Move the snapshot directory in one rename where both pools share a subvolume (the
    snapshots inside come along); else each snapshot on its own (`_move_snapshot`)."""
    whole = src.is_dir() and set(os.listdir(src)) <= set(ids)  # nothing foreign comes along
    if whole and not (dst.exists() and any(os.scandir(dst))):
        with contextlib.suppress(FileNotFoundError):
            dst.rmdir()
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(src, dst)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
    for sid in ids:
        move_snapshot(src / sid, dst / sid)


def move_snapshot(src: Path, dst: Path) -> None:
    """A read-only subvolume cannot change directory (its `..` is read-only): snapshot it to
    the new place, O(1) and sharing every extent, then delete the old one. Idempotent."""
    if btrfs_cli.is_subvolume(src):
        if not btrfs_cli.is_subvolume(dst):
            btrfs_cli.snapshot(src, dst, readonly=True)
        btrfs_cli.delete_subvolume(src)


def drop_empty_instance(path: Path) -> None:
    if not_empty(path):
        raise InvalidStateError(f"destination {path} is not empty; refusing to replace it")
    btrfs_cli.delete_subvolume(path)
    if path.is_dir():
        path.rmdir()


def switch_by_move(s: Sides, journal: BtrfsJournal) -> None:
    if btrfs_cli.is_subvolume(s.src):
        drop_empty_instance(s.dst)
        os.rename(s.src, s.dst)
    elif not btrfs_cli.is_subvolume(s.dst):
        raise PermanentError(f"instance data is neither at {s.src} nor at {s.dst}")
    move_snapshots(s.src_snaps, s.dst_snaps, journal.snapshot_ids)
    if s.src_snaps.is_dir() and not any(os.scandir(s.src_snaps)):
        s.src_snaps.rmdir()
    if journal.dest_limit is not None:
        btrfs_cli.set_limit(s.dst, journal.dest_limit)

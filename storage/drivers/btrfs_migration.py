"""Driver-assisted migration between two btrfs pools.

Same filesystem: phase 1 does nothing; the switchover renames the instance subvolume and each
snapshot subvolume into the destination pool, O(1) whatever the size. Different filesystems:
phase 1 sends the snapshot chain oldest first, each incrementally from its predecessor (so the
destination keeps the snapshots and their shared extents), then a migration snapshot of the
live subvolume while clients write. The switchover sets the source's `ro` property, takes a
final snapshot, sends it incrementally (O(changed data)), and makes a writable snapshot of it
the destination instance. A journal beside the source makes every hook idempotent.

The `ro` property cannot revoke a descriptor opened for writing before it; the source's
generation after the final send shows such writes, and the final send repeats for them.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from storage.drivers import btrfs_cli, btrfs_send
from storage.drivers.base import Compatibility, MigrationRef, PoolRef, StopCheck
from storage.drivers.btrfs_journal import (
    JOURNAL_DIR,
    PHASE1,
    BtrfsJournal,
    Sides,
    journal_of,
    sides,
)
from storage.drivers.btrfs_switch import (
    not_empty,
    remove_tree,
    switch_by_move,
    switch_received,
    undo_move,
    undo_send,
)
from storage.drivers.localfs_journal import (
    journal_lock,
    read_model,
    remove_journal,
    updating_model,
    write_journal,
)
from storage.drivers.localfs_paths import safe_child, same_driver_root
from storage.errors import InvalidInputError, InvalidStateError, NotFoundError, PermanentError
from storage.progress import weighted_percent

FINAL_SEND_PASSES = 3
_PROGRESS_EVERY_S = 0.5


def check_compatibility(source_root: Path, source_location: str, dest: PoolRef) -> Compatibility:
    try:
        dest_root = same_driver_root(dest, "btrfs")
    except InvalidInputError as exc:
        return Compatibility(False, reason=str(exc))
    src = safe_child(source_root, source_location)
    if not btrfs_cli.is_subvolume(src):
        return Compatibility(False, reason=f"source instance subvolume {src} is missing")
    dest_fs = btrfs_cli.filesystem_id(dest_root)
    if dest_fs is None:
        return Compatibility(False, reason=f"destination {dest_root} is not on btrfs")
    same = dest_fs == btrfs_cli.filesystem_id(src)
    return Compatibility(
        True,
        writable=True,
        # The export path changes at the switchover (clients remount), as for localfs.
        nondisruptive=False,
        preserve_metadata=True,
        preserve_snapshots=True,
        reason="same filesystem: the switchover moves the subvolume and its snapshots"
        if same
        else "different filesystems: btrfs send/receive of the snapshot chain, source "
        "writable, incremental final send at the switchover",
    )


def _chain_order(snaps: Path, ids: list[str]) -> list[str]:
    return sorted(ids, key=lambda sid: btrfs_cli.subvolume_info(snaps / sid).created_generation)


def start(source_root: Path, ref: MigrationRef) -> None:
    s = sides(source_root, ref)
    if read_model(s.journal, BtrfsJournal) is not None:
        return
    if not btrfs_cli.is_subvolume(s.src):
        raise NotFoundError(f"source instance subvolume {s.src} is missing")
    on_disk = sorted(
        p.name
        for p in (s.src_snaps.iterdir() if s.src_snaps.is_dir() else [])
        if btrfs_cli.is_subvolume(p)
    )
    missing = sorted(set(ref.snapshot_ids) - set(on_disk))
    if missing:
        raise NotFoundError(f"snapshot data missing beside {s.src}: {', '.join(missing)}")
    if not_empty(s.dst):
        raise InvalidStateError(f"destination {s.dst} is not empty; refusing to merge into it")
    if not_empty(s.dst_snaps):
        raise InvalidStateError(f"destination snapshot directory {s.dst_snaps} is not empty")
    same = btrfs_cli.filesystem_id(s.dst.parent) == btrfs_cli.filesystem_id(s.src)
    limit = btrfs_cli.qgroup_usage(s.dst).limit if btrfs_cli.is_subvolume(s.dst) else None
    journal = BtrfsJournal(
        migration_id=ref.migration_id,
        mode="move" if same else "send",
        snapshot_ids=_chain_order(s.src_snaps, on_disk),
        dest_limit=limit,
    )
    with journal_lock(s.journal):
        if read_model(s.journal, BtrfsJournal) is None:
            write_journal(s.journal, journal)


class _Meter:
    """Counts stream bytes into the journal, at most every `_PROGRESS_EVERY_S`."""

    def __init__(self, journal_path: Path) -> None:
        self.path, self.pending, self.last = journal_path, 0, time.monotonic()

    def __call__(self, n: int) -> None:
        self.pending += n
        if time.monotonic() - self.last >= _PROGRESS_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            with updating_model(self.path, BtrfsJournal) as j:
                j.bytes_sent += self.pending
            self.pending, self.last = 0, time.monotonic()


def _send_chain(
    s: Sides,
    chain: list[tuple[Path, Path | None, Path]],
    what: str,
    should_stop: StopCheck | None,
) -> None:
    """Send each (snapshot, parent, into directory) in order; resumes past complete ones."""
    meter = _Meter(s.journal)
    try:
        for snap, parent, into in chain:
            step = f"{what}: sending {snap.name} to {into}"
            btrfs_send.send_receive(
                snap, parent, into, step, on_bytes=meter, should_stop=should_stop
            )
    finally:
        meter.flush()


def _planned_bytes(s: Sides, names: list[Path]) -> int:
    """Estimated stream size: the first snapshot's data, then what each adds (exclusive)."""
    btrfs_cli.sync(s.src)
    sizes = [btrfs_cli.qgroup_usage(p) for p in names]
    return sizes[0].referenced + sum(u.exclusive for u in sizes[1:]) if sizes else 0


def continue_(source_root: Path, ref: MigrationRef, should_stop: StopCheck | None) -> bool:
    s = sides(source_root, ref)
    journal = journal_of(s)
    if journal.state != "started":
        return True
    if journal.mode == "send":
        phase1 = s.src_work / PHASE1
        if not btrfs_cli.is_subvolume(phase1):
            btrfs_cli.snapshot(s.src, phase1, readonly=True)
        names = [s.src_snaps / sid for sid in journal.snapshot_ids] + [phase1]
        if not journal.bytes_planned:
            planned = _planned_bytes(s, names)
            with updating_model(s.journal, BtrfsJournal) as j:
                j.bytes_planned = planned
        # The snapshots are received where they will stay (a subvolume received read-only
        # cannot be renamed into another directory); the migration snapshot beside them.
        chain = [
            (snap, parent, s.dst_snaps if snap != phase1 else s.recv)
            for snap, parent in zip(names, [None, *names[:-1]], strict=True)
        ]
        _send_chain(s, chain, "phase 1", should_stop)
    with updating_model(s.journal, BtrfsJournal) as j:
        if j.state == "started":
            j.state = "phase1_done"
    return True


def _freeze(s: Sides) -> None:
    if not btrfs_cli.subvolume_info(s.src).readonly:
        btrfs_cli.set_readonly(s.src, True)


def _final_sends(s: Sides, should_stop: StopCheck | None) -> int:
    """Send final snapshots of the frozen source until one shows no late write; its number."""
    journal = journal_of(s)
    n = max(journal.finals, 1)
    while True:
        final = s.src_work / f".final-{n}"
        if not btrfs_cli.is_subvolume(final):
            btrfs_cli.sync(s.src)
            btrfs_cli.snapshot(s.src, final, readonly=True)
        with updating_model(s.journal, BtrfsJournal) as j:
            j.finals = n
        parent = s.src_work / (PHASE1 if n == 1 else f".final-{n - 1}")
        _send_chain(s, [(final, parent, s.recv)], "switchover", should_stop)
        btrfs_cli.sync(s.src)
        # A write through a descriptor opened before the freeze moves the source on.
        taken = btrfs_cli.subvolume_info(final).created_generation
        if btrfs_cli.subvolume_info(s.src).generation <= taken:
            return n
        if n >= FINAL_SEND_PASSES:
            raise PermanentError(
                f"the source {s.src} kept changing after it was frozen ({n} final sends); "
                "stop the writers (a process with an open file bypasses the ro property) "
                "and retry"
            )
        n += 1


def complete(source_root: Path, ref: MigrationRef, should_stop: StopCheck | None) -> None:
    s = sides(source_root, ref)
    journal = journal_of(s)
    if journal.state == "switched":
        return
    if journal.state == "started":
        raise InvalidStateError("phase 1 of the driver migration is not done yet")
    foreign = (
        sorted(set(os.listdir(s.dst_snaps)) - set(journal.snapshot_ids))
        if s.dst_snaps.is_dir()
        else []
    )
    if foreign:
        raise InvalidStateError(
            f"destination snapshot directory {s.dst_snaps} is not empty: {', '.join(foreign)}"
        )
    if journal.mode == "move":
        with updating_model(s.journal, BtrfsJournal) as j:
            j.state = "switching"
        switch_by_move(s, journal)
    else:
        _freeze(s)
        with updating_model(s.journal, BtrfsJournal) as j:
            j.state = "frozen" if j.state == "phase1_done" else j.state
        final = _final_sends(s, should_stop)
        with updating_model(s.journal, BtrfsJournal) as j:
            j.state = "switching"
        switch_received(s, journal, final)
    with updating_model(s.journal, BtrfsJournal) as j:
        j.state, j.progress = "switched", 100


def cancel(source_root: Path, ref: MigrationRef) -> None:
    """Undo what this migration created; idempotent. The caller stops phase 1 first."""
    s = sides(source_root, ref)
    if read_model(s.journal, BtrfsJournal) is None:
        return
    with journal_lock(s.journal):
        journal = read_model(s.journal, BtrfsJournal)
        if journal is None:
            return
        if journal.state == "switched":
            raise InvalidStateError(
                f"migration {ref.migration_id} already switched over; the data lives at {s.dst}"
            )
        if journal.mode == "move":
            undo_move(s, journal)
        else:
            undo_send(s, journal)
        if btrfs_cli.is_subvolume(s.src) and btrfs_cli.subvolume_info(s.src).readonly:
            btrfs_cli.set_readonly(s.src, False)
        if not btrfs_cli.is_subvolume(s.dst):
            btrfs_cli.create_subvolume(s.dst)  # the caller's empty instance, as it was
            if journal.dest_limit is not None:
                btrfs_cli.set_limit(s.dst, journal.dest_limit)
        if s.dst_snaps.is_dir() and not any(os.scandir(s.dst_snaps)):
            s.dst_snaps.rmdir()
        for leftover in (s.recv.parent, s.dst_snaps):
            if leftover.is_dir() and not any(os.scandir(leftover)):
                leftover.rmdir()
    remove_journal(s.journal)


def remove_leftovers(source_root: Path, location: str) -> None:
    """`delete_instance`: migration snapshots and journals kept beside the instance."""
    work = safe_child(source_root / JOURNAL_DIR, location)
    if work.is_dir():
        for child in work.iterdir():
            if child.name.endswith(".snaps") or child.name.endswith(".recv"):
                remove_tree(child)
        shutil.rmtree(work, ignore_errors=True)


def progress(source_root: Path, ref: MigrationRef) -> dict[str, object]:
    s = sides(source_root, ref)
    if read_model(s.journal, BtrfsJournal) is None:
        return {"total_progress": 0, "state": "not_started"}
    with journal_lock(s.journal):
        journal = read_model(s.journal, BtrfsJournal)
        if journal is None:
            return {"total_progress": 0, "state": "not_started"}
        extras: dict[str, object] = {
            "mode": journal.mode,
            "state": journal.state,
            "bytes_sent": journal.bytes_sent,
            "bytes_planned": journal.bytes_planned,
        }
        if journal.state != "started":
            now = 100
        else:
            # The estimate can fall short of the stream; stay below 100 until phase 1 ends.
            now = weighted_percent(
                bytes_done=journal.bytes_sent,
                bytes_total=max(journal.bytes_planned, journal.bytes_sent),
                entries_done=0,
                entries_total=0,
            )
        if now > journal.progress:
            journal.progress = now
            write_journal(s.journal, journal)
        return {"total_progress": journal.progress, **extras}

"""The btrfs driver's migration journal and the paths one migration touches.

The journal is a JSON file beside the source instance, kept with the localfs journal helpers
(atomic, fsynced, under a `flock`); it makes every migration hook idempotent across crashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from storage.drivers.base import MigrationRef
from storage.drivers.localfs_journal import read_model
from storage.drivers.localfs_paths import pool_root, safe_child, snapshots_dir
from storage.errors import InvalidStateError

JOURNAL_DIR = ".migrations"
PHASE1 = ".phase1"


class BtrfsJournal(BaseModel):
    migration_id: str
    mode: Literal["move", "send"]
    state: Literal["started", "phase1_done", "frozen", "switching", "switched"] = "started"
    snapshot_ids: list[str] = []
    """Oldest first: the order of the send chain."""
    dest_limit: int | None = None
    """The qgroup limit of the caller's (empty) destination instance, for its replacement."""
    dest_made: bool = False
    """The switchover has made the destination instance (a crash after it must not redo it)."""
    finals: int = 0
    """Final snapshots taken (`.final-1`, ...); the last one is the frozen source."""
    bytes_sent: int = 0
    bytes_planned: int = 0
    progress: int = 0
    """High-water mark of the reported total_progress, so it never goes back."""


@dataclass(frozen=True)
class Sides:
    src: Path
    dst: Path
    src_snaps: Path
    dst_snaps: Path
    src_work: Path
    """The source's migration snapshots (`.phase1`, `.final-N`)."""
    recv: Path
    """Where the destination receives the chain before the switch."""
    journal: Path


def sides(source_root: Path, ref: MigrationRef) -> Sides:
    dest_root = pool_root(ref.dest_pool)
    work = safe_child(source_root / JOURNAL_DIR, ref.source_location)
    return Sides(
        src=safe_child(source_root, ref.source_location),
        dst=safe_child(dest_root, ref.dest_location),
        src_snaps=snapshots_dir(source_root, ref.source_location),
        dst_snaps=snapshots_dir(dest_root, ref.dest_location),
        src_work=work / f"{ref.migration_id}.snaps",
        recv=safe_child(dest_root / JOURNAL_DIR, ref.dest_location) / f"{ref.migration_id}.recv",
        journal=work / f"{ref.migration_id}.json",
    )


def journal_of(s: Sides) -> BtrfsJournal:
    journal = read_model(s.journal, BtrfsJournal)
    if journal is None:
        raise InvalidStateError(f"driver migration was not started (no journal at {s.journal})")
    return journal

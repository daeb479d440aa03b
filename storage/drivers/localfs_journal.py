"""The localfs driver's per-migration journal: a small JSON file beside the source instance.

It makes every migration hook idempotent across crashes and records what the driver created,
so cancel removes exactly that. Read-modify-write happens under an exclusive `flock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ValidationError

from storage.errors import InvalidStateError, PermanentError

JournalState = Literal["started", "phase1_done", "frozen", "switching", "switched"]


class Journal(BaseModel):
    migration_id: str
    mode: Literal["rename", "copy"]
    state: JournalState = "started"
    dest_preexisted: bool = False
    snapshot_ids: list[str] = []
    frozen_at_ns: int | None = None
    """When the copy-mode switchover froze the source (the final sync copies that state)."""
    progress: int = 0
    """High-water mark of the reported total_progress, so it never goes back."""


M = TypeVar("M", bound=BaseModel)
"""A driver's own journal model (the btrfs driver keeps its journals the same way)."""


def read_journal(path: Path) -> Journal | None:
    return read_model(path, Journal)


def read_model(path: Path, model: type[M]) -> M | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise PermanentError(f"migration journal {path} is unreadable: {exc}") from None


def write_journal(path: Path, journal: BaseModel) -> None:
    """Atomic replace, fsynced: a crash leaves the old or the new journal, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(journal.model_dump_json())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextmanager
def journal_lock(path: Path) -> Iterator[None]:
    """Serialises journal updates between threads and processes touching one migration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def updating_journal(path: Path) -> Iterator[Journal]:
    """See `updating_model`."""
    with updating_model(path, Journal) as journal:
        yield journal


@contextmanager
def updating_model(path: Path, model: type[M]) -> Iterator[M]:
    """Yield the journal under the lock and write it back; a missing journal is an error.

    Never re-creates a journal: a cancel that removed it wins over a late phase-1 update.
    """
    with journal_lock(path):
        journal = read_model(path, model)
        if journal is None:
            raise InvalidStateError(f"no driver migration is recorded at {path} (cancelled?)")
        yield journal
        write_journal(path, journal)


def remove_journal(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".lock"), path.with_name(path.name + ".tmp")):
        p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # other migrations of this instance still have journals
        path.parent.rmdir()

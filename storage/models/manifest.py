"""The data mover's durable plan: one copy job, one manifest row per source entry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, new_id, utcnow


class CopyJob(Base):
    __tablename__ = "copy_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    source_url: Mapped[str] = mapped_column(String(2048))
    dest_url: Mapped[str] = mapped_column(String(2048))
    state: Mapped[str] = mapped_column(String(16), default="planning")
    generation: Mapped[int] = mapped_column(default=0)
    """Bumped by each (re-)plan; entries not seen in the latest walk have vanished."""
    files_planned: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_planned: Mapped[int] = mapped_column(BigInteger, default=0)
    files_verified: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_verified: Mapped[int] = mapped_column(BigInteger, default=0)
    files_skipped: Mapped[int] = mapped_column(BigInteger, default=0)
    files_failed: Mapped[int] = mapped_column(BigInteger, default=0)
    entries_planned: Mapped[int] = mapped_column(BigInteger, default=0)
    """Every entry (files, directories, links, special files), for progress of trees of empties."""
    entries_done: Mapped[int] = mapped_column(BigInteger, default=0)
    batches: Mapped[int] = mapped_column(default=0)
    not_preserved: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Metadata items (owner, xattr, mode, times...) the destination could not hold."""
    repaired: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Verified files found changed or missing at the destination and copied again."""
    current_path: Mapped[str | None] = mapped_column(Text, default=None)
    """Last path recorded by a batch (display only; non-UTF-8 bytes backslash-escaped)."""
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ManifestEntry(Base):
    """One source entry. `path` is raw bytes (names need not be UTF-8); `path_key` indexes it."""

    __tablename__ = "manifest_entries"
    __table_args__ = (
        UniqueConstraint("job_id", "path_key", name="uq_manifest_entries_job_path"),
        Index("ix_manifest_entries_job_batch_state", "job_id", "batch", "state"),
        Index("ix_manifest_entries_job_id_id", "job_id", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("copy_jobs.id", ondelete="CASCADE"))
    path: Mapped[bytes] = mapped_column(LargeBinary)
    path_key: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(8))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    ctime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    """Change time: catches chmod/chown/xattr-only changes on the incremental re-plan."""
    mode: Mapped[int] = mapped_column(default=0)
    """Full `st_mode` (type bits included)."""
    blocks: Mapped[int] = mapped_column(BigInteger, default=0)
    """512-byte blocks allocated; fewer than the size needs means a sparse file."""
    rdev: Mapped[int] = mapped_column(BigInteger, default=0)
    uid: Mapped[int | None] = mapped_column(default=None)
    gid: Mapped[int | None] = mapped_column(default=None)
    link_target: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    hardlink_group: Mapped[str | None] = mapped_column(String(64), default=None)
    batch: Mapped[int] = mapped_column(default=0)
    generation: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(16), default="planned")
    src_hash: Mapped[str | None] = mapped_column(String(32), default=None)
    dst_hash: Mapped[str | None] = mapped_column(String(32), default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)

"""One row per migration request; the share's `task_state` is the client-visible state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, new_id, utcnow


class Migration(Base):
    __tablename__ = "migrations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    share_id: Mapped[str] = mapped_column(ForeignKey("shares.id", ondelete="CASCADE"), index=True)
    source_instance_id: Mapped[str] = mapped_column(String(36))
    dest_instance_id: Mapped[str | None] = mapped_column(String(36), default=None)
    dest_host: Mapped[str] = mapped_column(String(255))

    preserve_metadata: Mapped[bool] = mapped_column(default=False)
    preserve_snapshots: Mapped[bool] = mapped_column(default=False)
    writable: Mapped[bool] = mapped_column(default=False)
    nondisruptive: Mapped[bool] = mapped_column(default=False)
    force_host_assisted: Mapped[bool] = mapped_column(default=False)
    new_share_type_id: Mapped[str | None] = mapped_column(String(36), default=None)
    new_share_network_id: Mapped[str | None] = mapped_column(String(36), default=None)
    rollback_of: Mapped[str | None] = mapped_column(String(36), default=None)
    """For a rollback: the migration it reverses (its destination is that one's retained source)."""
    retain_source_s: Mapped[float] = mapped_column(Float, default=0, server_default="0")
    """The rollback window (`SHAREMIG_RETAIN_SOURCE_S` of the process that admitted the
    start): the switchover keeps the source this long. Recorded at the start, so the worker
    that runs the switchover days later applies the window the operator asked for."""

    mechanism: Mapped[str | None] = mapped_column(String(16), default=None)
    """`driver` or `host`, once phase 1 chose."""
    active: Mapped[bool] = mapped_column(default=True, index=True)
    outcome: Mapped[str | None] = mapped_column(String(64), default=None)
    """Terminal task_state this migration ended in (success / error / cancelled)."""
    requested_action: Mapped[str | None] = mapped_column(String(16), default=None)
    """`complete` or `cancel`, set atomically by the API: a second call gets the 400."""
    approval_reason: Mapped[str | None] = mapped_column(Text, default=None)

    files_planned: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_planned: Mapped[int] = mapped_column(BigInteger, default=0)
    files_verified: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_verified: Mapped[int] = mapped_column(BigInteger, default=0)
    progress: Mapped[int] = mapped_column(default=0)
    """High-water mark of total_progress (0-100); only ever raised."""
    verified_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the verified counters last moved: the live ETA counts down from there."""
    current_path: Mapped[str | None] = mapped_column(Text, default=None)

    copy_job_id: Mapped[str | None] = mapped_column(String(36), default=None)
    flow_run_id: Mapped[str | None] = mapped_column(String(36), default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    """The flow run working on the migration now (`storage.migration_lease`)."""
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    complete_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the switchover was approved; with `finished_at`, the switchover's duration."""

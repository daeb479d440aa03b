"""One row per share a maintenance run (evacuate / rebalance) moves: its plan and its outcome.

The maintenance flow suspends while its migrations run; when it is resumed it re-enters from
the top and finds its batch here, not in a process that waited."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, utcnow


class MaintenanceMove(Base):
    __tablename__ = "maintenance_moves"
    __table_args__ = (UniqueConstraint("flow_run_id", "share_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    flow_run_id: Mapped[str] = mapped_column(String(36), index=True)
    """The maintenance flow run that owns the batch."""
    position: Mapped[int] = mapped_column()
    share_id: Mapped[str] = mapped_column(String(36))
    source_pool: Mapped[str] = mapped_column(String(255))
    dest_pool: Mapped[str | None] = mapped_column(String(255), default=None)
    """None for a share the plan could not place (`outcome` says why)."""
    auto_approve: Mapped[bool] = mapped_column(default=False)
    migration_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    outcome: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

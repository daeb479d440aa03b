"""Shares, their instances (one per pool copy), export locations, snapshots and access rules."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.models.base import Base, new_id, utcnow


class Share(Base):
    """What a Manila client sees. `host` mirrors the active instance's pool until switchover."""

    __tablename__ = "shares"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(64), default=None)
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    size: Mapped[int] = mapped_column(BigInteger)
    share_proto: Mapped[str] = mapped_column(String(32), default="NFS")
    status: Mapped[str] = mapped_column(String(64), default="creating")
    task_state: Mapped[str | None] = mapped_column(String(64), default=None)
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    share_type_id: Mapped[str] = mapped_column(ForeignKey("share_types.id"))
    share_network_id: Mapped[str | None] = mapped_column(
        ForeignKey("share_networks.id"), default=None
    )
    availability_zone: Mapped[str | None] = mapped_column(String(255), default=None)
    is_public: Mapped[bool] = mapped_column(default=False)
    metadata_: Mapped[dict[str, object]] = mapped_column("metadata", JSON, default=dict)
    snapshot_id: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    instances: Mapped[list[ShareInstance]] = relationship(
        back_populates="share", lazy="raise", cascade="all, delete-orphan"
    )


class ShareInstance(Base):
    """One copy of a share on one pool. `location` is the instance's key inside the pool."""

    __tablename__ = "share_instances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    share_id: Mapped[str] = mapped_column(ForeignKey("shares.id", ondelete="CASCADE"), index=True)
    pool_name: Mapped[str] = mapped_column(ForeignKey("pools.name"))
    status: Mapped[str] = mapped_column(String(32), default="creating")
    location: Mapped[str] = mapped_column(String(1024))
    share_type_id: Mapped[str] = mapped_column(ForeignKey("share_types.id"))
    share_network_id: Mapped[str | None] = mapped_column(
        ForeignKey("share_networks.id"), default=None
    )
    access_read_only: Mapped[bool] = mapped_column(default=False)
    """Set while a host-assisted copy runs: the source's rules are cast to read-only."""
    frozen_at_ns: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """When the pool's driver froze this instance (writes refused); None when not frozen."""
    retained_until: Mapped[datetime | None] = mapped_column(default=None)
    """A switchover's old instance kept for `sharemig rollback` (status `retained`) until then;
    not exported, still charged to its pool."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    share: Mapped[Share] = relationship(back_populates="instances", lazy="raise")
    export_locations: Mapped[list[ExportLocation]] = relationship(
        back_populates="instance", lazy="raise", cascade="all, delete-orphan"
    )


class ExportLocation(Base):
    __tablename__ = "export_locations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    share_instance_id: Mapped[str] = mapped_column(
        ForeignKey("share_instances.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(String(2048))
    preferred: Mapped[bool] = mapped_column(default=True)
    is_admin_only: Mapped[bool] = mapped_column(default=False)
    metadata_: Mapped[dict[str, object]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    instance: Mapped[ShareInstance] = relationship(back_populates="export_locations", lazy="raise")


class Snapshot(Base):
    """A point-in-time copy of a share. Its data lives beside the share's current instance."""

    __tablename__ = "snapshots"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    share_id: Mapped[str] = mapped_column(ForeignKey("shares.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    size: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32), default="creating")
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    """Free key/value pairs (Manila 2.73+)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AccessRule(Base):
    __tablename__ = "access_rules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    share_id: Mapped[str] = mapped_column(ForeignKey("shares.id", ondelete="CASCADE"), index=True)
    access_type: Mapped[str] = mapped_column(String(32))
    access_to: Mapped[str] = mapped_column(String(255))
    access_level: Mapped[str] = mapped_column(String(2), default="rw")
    state: Mapped[str] = mapped_column(String(32), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

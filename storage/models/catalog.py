"""Pools (from the inventory), share types and share networks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, new_id, utcnow


class Pool(Base):
    """A storage pool, named like Manila's `host@backend#pool`; synced from `pools.yaml`."""

    __tablename__ = "pools"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    backend: Mapped[str] = mapped_column(String(255))
    pool: Mapped[str] = mapped_column(String(255))
    driver: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(1024))
    capacity_gb: Mapped[int] = mapped_column(BigInteger)
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    options: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(default=True)
    max_concurrent_migrations: Mapped[int | None] = mapped_column(default=None)
    """At most this many migrations moving data from or to the pool at once (None: no cap)."""
    bandwidth_limit_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Bytes/s shared by every migration reading from or writing to the pool (None: no budget)."""
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def service(self) -> str:
        """The `host@backend` part: Manila's share service name."""
        return f"{self.host}@{self.backend}"


class ShareType(Base):
    __tablename__ = "share_types"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    extra_specs: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    is_public: Mapped[bool] = mapped_column(default=True)
    is_default: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def spec_bool(self, key: str, default: bool = False) -> bool:
        """Read a boolean extra spec the way Manila does (`"True"`, `"<is> True"`, bools)."""
        value = self.extra_specs.get(key, default)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower().removeprefix("<is>").strip()
        return text in {"true", "1", "yes", "on", "t", "y"}


class ShareTypeProject(Base):
    """A project given access to a private share type (Manila's share_type_projects)."""

    __tablename__ = "share_type_projects"

    share_type_id: Mapped[str] = mapped_column(
        ForeignKey("share_types.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ShareNetwork(Base):
    __tablename__ = "share_networks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PoolBandwidth(Base):
    """A pool's bandwidth token bucket, shared by every process and host copying through it
    (`storage.mover.pool_budget`)."""

    __tablename__ = "pool_bandwidth"

    pool_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    stamp: Mapped[float] = mapped_column(Float)
    """Wall-clock time (s) of the last refill: hosts share it, so their clocks must agree."""

"""Measured data mover rates, one row per finished phase-1 copy, for plans' estimates."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, utcnow


class MoverRate(Base):
    __tablename__ = "mover_rates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hostname: Mapped[str] = mapped_column(String(255), index=True)
    """The machine the copy ran on (its `socket.gethostname()`)."""
    job_id: Mapped[str | None] = mapped_column(String(36), default=None)
    """The copy job measured (its report shows this copy's duration)."""
    files: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

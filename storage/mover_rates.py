"""Measured data mover rates: recorded when a phase-1 copy completes, read by plans.

A rate is in the weighted units of `storage.progress` (bytes plus a weight per file), so one
figure covers a share of big files and one of many small ones alike.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import CopyJob, MoverRate
from storage.models.base import aware
from storage.progress import weighted_work

DEFAULT_WORK_PER_S = 100 * 1024 * 1024
"""Without a measured copy on this host, plans assume 100 MiB of weighted work a second
(about a local ext4 → ext4 copy of mixed files on a small VM; see README, "Plans")."""
RECENT_RUNS = 20
"""Only the newest runs count: hardware and load change."""
MIN_SECONDS = 0.5
"""Shorter copies measure start-up cost, not the mover's rate."""


@dataclass(frozen=True)
class MeasuredRate:
    work_per_s: float
    runs: int
    """0 when `work_per_s` is the documented default."""
    hostname: str


def this_host() -> str:
    return socket.gethostname()


def record_copy_rate(session: Session, job: CopyJob, *, finished_at: datetime) -> None:
    """One phase-1 copy that just completed on this host, timed from its plan's start."""
    seconds = (aware(finished_at) - aware(job.created_at)).total_seconds()
    if seconds < MIN_SECONDS or job.files_verified + job.bytes_verified == 0:
        return
    if session.scalar(select(MoverRate.id).where(MoverRate.job_id == job.id)) is not None:
        return  # a retried finish measures the same copy once
    session.add(
        MoverRate(
            hostname=this_host(),
            job_id=job.id,
            files=job.files_verified,
            bytes=job.bytes_verified,
            seconds=seconds,
        )
    )
    session.flush()


def measured_rate(session: Session, hostname: str | None = None) -> MeasuredRate:
    """Weighted work per second over this host's recent copies (total work / total time),
    or `DEFAULT_WORK_PER_S` when none is recorded."""
    host = hostname or this_host()
    recent = (
        select(MoverRate.files, MoverRate.bytes, MoverRate.seconds)
        .where(MoverRate.hostname == host)
        .order_by(MoverRate.id.desc())
        .limit(RECENT_RUNS)
        .subquery()
    )
    runs, files, bytes_, seconds = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(recent.c.files), 0),
            func.coalesce(func.sum(recent.c.bytes), 0),
            func.coalesce(func.sum(recent.c.seconds), 0.0),
        )
    ).one()
    if not runs or seconds <= 0:
        return MeasuredRate(float(DEFAULT_WORK_PER_S), 0, host)
    work = weighted_work(files=int(files), bytes_=int(bytes_))
    return MeasuredRate(work / float(seconds), int(runs), host)


def copy_seconds(session: Session, job_id: str) -> float | None:
    """How long the measured phase-1 copy of `job_id` took, if it was recorded."""
    return session.scalar(select(MoverRate.seconds).where(MoverRate.job_id == job_id))

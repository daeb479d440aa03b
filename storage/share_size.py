"""Manila's extend and shrink, done synchronously: the share leaves `extending`/`shrinking`
within the request, so a client polling for `available` sees it at once.

A shrink below what the share holds is refused the way Manila's share manager refuses it:
the request is accepted, the size stays, and the status says
`shrinking_possible_data_loss_error` (from which a smaller shrink, or `reset_status`, leads out).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from storage.errors import CapacityError, InvalidInputError, InvalidStateError, classified_os_errors
from storage.models import Share
from storage.models.base import utcnow
from storage.pools import driver_for, free_gb, lock_pool
from storage.shares import BUSY_TASK_STATES, active_instance, get_share

log = logging.getLogger(__name__)

GiB = 1 << 30
DATA_LOSS = "shrinking_possible_data_loss_error"
EXTENDABLE = ("available",)
SHRINKABLE = ("available", DATA_LOSS)


@dataclass(frozen=True)
class ResizeOutcome:
    """What a resize did: the share's size and status afterwards, and why, if it was refused."""

    size: int
    status: str
    refused: str | None = None


def _claim(session: Session, share: Share, allowed: tuple[str, ...], busy_status: str) -> None:
    """Move the share to `extending`/`shrinking` only if it is still idle (compare-and-set)."""
    if share.status not in allowed:
        raise InvalidStateError(
            f"Share {share.id} status must be in ({', '.join(allowed)}) to "
            f"{busy_status.removesuffix('ing')}, but current status is: {share.status}."
        )
    if share.task_state in BUSY_TASK_STATES:
        raise InvalidStateError(
            f"Share {share.id} is busy with an active task: {share.task_state}. "
            "Complete or cancel its migration first."
        )
    moved = session.execute(
        update(Share)
        .where(
            Share.id == share.id,
            Share.status.in_(allowed),
            or_(Share.task_state.is_(None), Share.task_state.not_in(list(BUSY_TASK_STATES))),
        )
        .values(status=busy_status, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidStateError(
            f"Share {share.id} changed while it was being resized; read it again and retry."
        )
    session.refresh(share)


def _check_new_size(new_size: object) -> int:
    if isinstance(new_size, bool) or not isinstance(new_size, int):
        raise InvalidInputError(f"new_size must be a whole number of GiB, got {new_size!r}")
    return new_size


def extend_share(
    session: Session, share_id: str, new_size: int, *, project_id: str | None = None
) -> ResizeOutcome:
    """Grow the share to `new_size` GiB; its pool must have the difference free."""
    new_size = _check_new_size(new_size)
    share = get_share(session, share_id, project_id)
    if new_size <= share.size:
        raise InvalidInputError(
            f"New size for extend must be greater than current size. "
            f"(current: {share.size}, extended: {new_size})."
        )
    _claim(session, share, EXTENDABLE, "extending")
    inst = active_instance(session, share)
    pool = lock_pool(session, inst.pool_name)
    free = free_gb(session, pool)
    if free < new_size - share.size:
        raise CapacityError(
            f"Pool {pool.name} has {free} GiB free; extending share {share.id} from "
            f"{share.size} to {new_size} GiB needs {new_size - share.size} GiB."
        )
    with classified_os_errors(f"extending share storage on pool {pool.name}"):
        driver_for(session, pool.name).resize_instance(inst.location, new_size)
    share.size = new_size
    share.status = "available"
    session.flush()
    return ResizeOutcome(share.size, share.status)


def shrink_share(
    session: Session, share_id: str, new_size: int, *, project_id: str | None = None
) -> ResizeOutcome:
    """Shrink the share to `new_size` GiB, unless it holds more than that."""
    new_size = _check_new_size(new_size)
    share = get_share(session, share_id, project_id)
    if new_size <= 0 or new_size >= share.size:
        raise InvalidInputError(
            "New size for shrink must be less than current size and greater than 0 "
            f"(current: {share.size}, new: {new_size})."
        )
    _claim(session, share, SHRINKABLE, "shrinking")
    inst = active_instance(session, share)
    driver = driver_for(session, inst.pool_name)
    with classified_os_errors(f"measuring share storage on pool {inst.pool_name}"):
        used = driver.used_bytes(inst.location)
    if used > new_size * GiB:
        share.status = DATA_LOSS
        session.flush()
        reason = (
            f"share {share.id} holds {used / GiB:.2f} GiB, more than the {new_size} GiB asked "
            "for; delete data first, then shrink again"
        )
        log.warning("shrink refused (possible data loss): %s", reason)
        return ResizeOutcome(share.size, share.status, reason)
    with classified_os_errors(f"shrinking share storage on pool {inst.pool_name}"):
        driver.resize_instance(inst.location, new_size)
    share.size = new_size
    share.status = "available"
    session.flush()
    return ResizeOutcome(share.size, share.status)

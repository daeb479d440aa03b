"""Liveness of a migration's flow run as a lease in the database, not a look at local `/proc`.

The run working on a migration holds its lease and renews it while it works (a thread, every
third of `SHAREMIG_LEASE_TTL_S`); a suspended run holds none (it has no process). Recovery,
on any host, treats a run that Prefect still calls running as dead only once its lease has
expired, so restarting `up` on one host never touches a live run on another. A run whose
lease was taken over (it stalled past the expiry and recovery started another) stops at its
next step without touching the migration: the new run owns it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update

from storage.db import session_scope
from storage.errors import LeaseLostError
from storage.models import Migration
from storage.models.base import utcnow
from storage.settings import get_settings

log = logging.getLogger(__name__)


def lease_ttl() -> timedelta:
    """How long a run may go without renewing before recovery may call it dead."""
    return timedelta(seconds=max(1.0, get_settings().lease_ttl_s))


TAKE_POLL_S = 0.5


def take(migration_id: str, owner: str, *, db_url: str | None = None) -> bool:
    """Take (or renew) the lease for `owner` unless another owner holds a live one."""
    now = utcnow()
    with session_scope(db_url) as s:
        taken = s.execute(
            update(Migration)
            .where(
                Migration.id == migration_id,
                or_(
                    Migration.lease_owner.is_(None),
                    Migration.lease_owner == owner,
                    Migration.lease_expires_at.is_(None),
                    Migration.lease_expires_at < now,
                ),
            )
            .values(lease_owner=owner, lease_expires_at=now + lease_ttl())
            .execution_options(synchronize_session=False)
        )
        return bool(taken.rowcount)  # type: ignore[attr-defined]


def renew(migration_id: str, owner: str, *, db_url: str | None = None) -> bool:
    """Push the expiry on; False when `owner` no longer holds the lease."""
    with session_scope(db_url) as s:
        renewed = s.execute(
            update(Migration)
            .where(Migration.id == migration_id, Migration.lease_owner == owner)
            .values(lease_expires_at=utcnow() + lease_ttl())
            .execution_options(synchronize_session=False)
        )
        return bool(renewed.rowcount)  # type: ignore[attr-defined]


def release(migration_id: str, owner: str, *, db_url: str | None = None) -> None:
    with session_scope(db_url) as s:
        s.execute(
            update(Migration)
            .where(Migration.id == migration_id, Migration.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


@dataclass(frozen=True)
class LeaseView:
    owner: str | None
    expires_at: datetime | None

    def live_for(self, run_id: str | None, now: datetime | None = None) -> bool:
        """`run_id` holds a lease that has not expired."""
        if run_id is None or self.owner != run_id or self.expires_at is None:
            return False
        current = (now or utcnow()).replace(tzinfo=None)
        return self.expires_at.replace(tzinfo=None) > current


class HeldLease:
    """A lease renewed by a daemon thread until `stop`; `lost` once another owner took it."""

    def __init__(self, migration_id: str, owner: str, db_url: str | None) -> None:
        self.migration_id, self.owner, self._db_url = migration_id, owner, db_url
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"lease-{migration_id[:8]}", daemon=True
        )

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        """Raise `LeaseLostError` if another run holds the migration."""
        if self.lost:
            raise LeaseLostError(
                f"migration {self.migration_id}: run {self.owner} does not hold its lease "
                f"(another run renewed it within the last {get_settings().lease_ttl_s} s, "
                "or took it over after this one stalled); this run stops and leaves the "
                "migration to that run"
            )

    def _renew_loop(self) -> None:
        every = max(0.2, get_settings().lease_ttl_s / 3)
        while not self._stop.wait(every):
            try:
                if not renew(self.migration_id, self.owner, db_url=self._db_url):
                    log.error(
                        "migration %s: lease taken over; run %s stops",
                        self.migration_id,
                        self.owner,
                    )
                    self._lost.set()
                    return
            except Exception as exc:  # the database is away for a moment: try again
                log.warning("migration %s: lease not renewed (%s)", self.migration_id, exc)

    def start(self) -> HeldLease:
        """Take the lease, waiting up to one TTL for a previous run to let go of it (the run
        that handed over to this one may still be on its way out)."""
        deadline = time.monotonic() + get_settings().lease_ttl_s + 1
        while not take(self.migration_id, self.owner, db_url=self._db_url):
            if time.monotonic() > deadline:
                self._lost.set()
                self.check()
            time.sleep(TAKE_POLL_S)
        self._thread.start()
        return self

    def try_start(self) -> bool:
        """Take the lease if nobody else holds a live one, without waiting; renewed from then
        on like `start`. False (and nothing to stop) when another owner holds it."""
        if not take(self.migration_id, self.owner, db_url=self._db_url):
            return False
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if not self.lost:
            release(self.migration_id, self.owner, db_url=self._db_url)


@contextmanager
def held(migration_id: str, owner: str, *, db_url: str | None = None) -> Iterator[HeldLease]:
    """Hold the migration's lease for `owner` while the block runs (renewed in a thread).

    Refused with `LeaseLostError` when another run holds a live lease."""
    lease = HeldLease(migration_id, owner, db_url).start()
    try:
        yield lease
    finally:
        lease.stop()

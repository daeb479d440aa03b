"""One bandwidth budget per pool, shared by every copy reading from or writing to it, in
every process on every host: a token bucket kept in the database (`pool_bandwidth`).

Why the database and not Prefect's rate limits (`rate_limit` with `slot_decay_per_second`):
the bytes are counted in the mover's worker processes, which are plain Python (`storage/`)
and may run where no Prefect client is configured; the database is what every copier
already talks to. Each take is one atomic UPDATE (portable: SQLite and PostgreSQL) that
refills the bucket for the time since the last take, subtracts the bytes and returns the
balance; a negative balance is a debt the taker sleeps off (`debt / rate`), so N copiers
together get the pool's rate, not N times it. Bytes are taken in grants of ~1/8 s of the
rate, so a pool at 8 MiB/s costs each copier about 8 short transactions a second.
The refill uses wall-clock time: hosts sharing a pool must keep their clocks in sync (NTP);
a clock that runs behind never refills the bucket early (the stamp only moves forward).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, case, literal, update
from sqlalchemy.exc import IntegrityError

from storage.db import session_scope
from storage.models import PoolBandwidth

BURST_S = 1.0
"""A pool idle for a while lets this many seconds' worth of bytes through at once."""
GRANTS_PER_S = 8


@dataclass(frozen=True)
class BudgetSpec:
    """A pool's name and budget (bytes/s): small enough to cross into worker processes."""

    pool: str
    rate: int


def _take(pool: str, rate: int, units: int, db_url: str | None) -> float:
    """Take `units` from the pool's bucket; returns how long the taker must sleep."""
    now = time.time()
    burst = float(rate) * BURST_S
    t = cast(Table, PoolBandwidth.__table__)
    elapsed = case((t.c.stamp < now, literal(now) - t.c.stamp), else_=0.0)
    refilled = t.c.tokens + elapsed * rate
    capped = case((refilled > burst, burst), else_=refilled)
    for _ in range(2):
        with session_scope(db_url) as s:
            balance = s.execute(
                update(t)
                .where(t.c.pool_name == pool)
                .values(
                    tokens=capped - units,
                    stamp=case((t.c.stamp < now, now), else_=t.c.stamp),
                )
                .returning(t.c.tokens)
            ).scalar()
            if balance is not None:
                return -float(balance) / rate if balance < 0 else 0.0
        try:
            with session_scope(db_url) as s:
                s.add(PoolBandwidth(pool_name=pool, tokens=burst, stamp=now))
        except IntegrityError:
            pass  # another copier created it first
    raise RuntimeError(f"pool {pool}: bandwidth bucket row missing")  # pragma: no cover


class PoolBudget:
    """`consume(bytes)` against every pool's shared budget (the slowest one decides)."""

    def __init__(self, specs: tuple[BudgetSpec, ...], db_url: str | None = None) -> None:
        if not specs or any(s.rate <= 0 for s in specs):
            raise ValueError("a pool budget needs pools with a positive rate")
        self.specs = specs
        self.db_url = db_url
        self.grant = max(16 << 10, min(s.rate for s in specs) // GRANTS_PER_S)
        self._pending = 0
        self._lock = threading.Lock()

    def consume(self, units: int) -> None:
        with self._lock:
            self._pending += units
            if self._pending < self.grant:
                return
            take, self._pending = self._pending, 0
        wait = max(_take(s.pool, s.rate, take, self.db_url) for s in self.specs)
        if wait > 0:
            time.sleep(wait)

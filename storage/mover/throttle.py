"""Optional rate limits (bytes copied, entries walked): a token bucket that sleeps the
calling thread when it is ahead."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Pacer(Protocol):
    """Anything that sleeps the caller when it is ahead of a rate (`Throttle`, `PoolBudget`)."""

    def consume(self, units: int) -> None: ...


class AllOf:
    """Several pacers at once: the copy goes at the slowest one's rate."""

    def __init__(self, *pacers: Pacer) -> None:
        self.pacers = pacers

    def consume(self, units: int) -> None:
        for pacer in self.pacers:
            pacer.consume(units)


def combined(*pacers: Pacer | None) -> Pacer | None:
    """One pacer for those given (None when there is none)."""
    present = [p for p in pacers if p is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else AllOf(*present)


class Throttle:
    """At most `rate` units (bytes, entries) per second on average, with up to one second
    of burst."""

    def __init__(self, rate: int) -> None:
        if rate <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = rate
        self._allowance = float(rate)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def consume(self, units: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._allowance = min(self.rate, self._allowance + (now - self._last) * self.rate)
            self._last = now
            self._allowance -= units
            wait = -self._allowance / self.rate if self._allowance < 0 else 0.0
        if wait > 0:
            time.sleep(wait)

"""`flows.prefect_worker`: what `up` runs as each worker, Prefect's CLI plus a housekeeper that
returns each flow run's cyclic garbage (the soak's flat-RSS check runs it for real)."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

from flows.prefect_worker import start_housekeeper
from tests.kit.waiting import wait_for


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_housekeeper_collects_cycles_the_automatic_collector_left() -> None:
    gc.disable()  # only the housekeeper collects from here
    try:
        node = _Node()
        gone = weakref.ref(node)
        del node
        assert gone() is not None, "a reference cycle outlives its last reference"
        stop = start_housekeeper(every_s=0.05)
        try:
            wait_for(lambda: gone() is None, timeout=10, interval=0.05, what="the cycle freed")
        finally:
            stop.set()
    finally:
        gc.enable()


def test_it_is_prefects_own_worker_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flows.prefect_worker", "worker", "start", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--pool" in proc.stdout and "--type" in proc.stdout

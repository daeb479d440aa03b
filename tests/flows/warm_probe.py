"""A flow for tests/flows/test_warm_start.py: reports the process that runs it, then waits.

Its run's launcher starts in this directory, so the module-path entrypoint
`warm_probe.report_and_wait` imports from here (in a zygote's child as in a cold start).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from prefect import flow
from prefect.settings import get_current_settings


@flow(name="warm-probe")
def report_and_wait(report: str, release: str, timeout_s: float = 120.0) -> str:
    """Write who runs this run to `report`, then return once `release` exists."""
    facts = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "probe_env": os.environ.get("SHAREMIG_PROBE"),
        "extra_loggers": get_current_settings().logging.extra_loggers,
    }
    Path(report).write_text(json.dumps(facts))
    deadline = time.monotonic() + timeout_s
    while not Path(release).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.05)
    return "released"

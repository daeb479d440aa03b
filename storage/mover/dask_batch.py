"""What a Dask worker runs for one copy batch that `DaskExecutor` submitted.

The worker has its own environment: sharemig installed, `SHAREMIG_DATABASE_URL` naming the
same database as the copy, and every pool at the same path (or URL) as on the submitting
host. The batch checks the last two before it touches a file and fails with a
`WorkerSetupError` naming what is missing, so the submitter retries it on another worker.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import timedelta

from pydantic import BaseModel
from sqlalchemy.engine import make_url

from storage.batch_heartbeat import BatchHeartbeat
from storage.errors import WorkerSetupError
from storage.mover.batch import copy_batch
from storage.mover.endpoints import open_endpoint
from storage.mover.results import BatchResult
from storage.mover.throttle import Throttle
from storage.settings import get_settings

log = logging.getLogger(__name__)

STOP_POLL_S = 0.25
"""How often a running batch asks the scheduler whether its copy was told to stop."""


class BatchSpec(BaseModel):
    """One batch's parameters: ids and small values, nothing that holds a secret."""

    job_id: str
    batch: int
    source_url: str
    dest_url: str
    database: str
    """The copy's database URL with its password hidden (`database_label`), to compare."""
    stop_event: str
    """Name of the `distributed.Event` the submitter sets to stop every batch of the copy."""
    lease_ttl_s: float
    bandwidth_limit: int | None = None


def database_label(url: str) -> str:
    """`url` as a person may read it (password hidden); equal labels mean the same database."""
    return make_url(url).render_as_string(hide_password=True)


def _worker_name() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # not inside a Dask worker (a direct call in a test)
        return socket.gethostname()


def check_worker(spec: BatchSpec, worker: str) -> None:
    """Refuse a batch this worker cannot run: a pool path it does not see, another database."""
    host = socket.gethostname()
    for role, url in (("source", spec.source_url), ("destination", spec.dest_url)):
        ep = open_endpoint(url)
        if not ep.local:
            continue
        # The destination instance's directory may not exist yet; its pool's must.
        seen = os.path.isdir(ep.root) or (
            role == "destination" and os.path.isdir(os.path.dirname(ep.root))
        )
        if not seen:
            raise WorkerSetupError(
                f"Dask worker {worker} (host {host}) has no {role} path {ep.root}: every "
                "worker needs each pool mounted at the same path as the host that started "
                "the copy; the batch is retried on another worker",
                worker,
            )
    mine = database_label(get_settings().db_url)
    if mine != spec.database:
        raise WorkerSetupError(
            f"Dask worker {worker} (host {host}) uses database {mine}, the copy uses "
            f"{spec.database}: set SHAREMIG_DATABASE_URL in the worker's environment; the "
            "batch is retried on another worker",
            worker,
        )


def run_batch(spec: BatchSpec) -> BatchResult:
    """Copy one batch on this Dask worker, stopping at a file boundary once the submitter sets
    the stop event or a cancel is recorded; renews the migration's lease meanwhile."""
    from distributed import Event

    worker = _worker_name()
    check_worker(spec, worker)
    event = Event(spec.stop_event)
    checked = [0.0, False]
    ttl = timedelta(seconds=spec.lease_ttl_s)
    with BatchHeartbeat(spec.job_id, ttl, None) as heartbeat:

        def should_stop() -> bool:
            now = time.monotonic()
            if not checked[1] and now - checked[0] >= STOP_POLL_S:
                checked[0] = now
                checked[1] = event.is_set() or heartbeat.cancel_requested()
            return bool(checked[1])

        log.info("job %s: batch %d on Dask worker %s", spec.job_id, spec.batch, worker)
        throttle = Throttle(spec.bandwidth_limit) if spec.bandwidth_limit else None
        return copy_batch(
            spec.job_id, spec.batch, db_url=None, should_stop=should_stop, throttle=throttle
        )

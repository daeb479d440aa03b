"""`DaskExecutor`: copy batches as tasks of a Dask distributed cluster (`distributed` itself).

Each batch is one Dask task (`dask_batch.run_batch`) with ids and small values for
parameters. Progress stays honest because it is read from the manifest, as for the local
pool, never from task states. Stopping matches the local pool: a `distributed.Event` per copy
that every running batch polls between files (and a recorded cancel, read from the database
by the batch itself), since Dask cannot interrupt a running task. A worker that dies is
Dask's to handle (its tasks are rescheduled elsewhere); a retried batch skips the entries
the manifest already holds as verified.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from storage.errors import (
    InvalidInputError,
    PermanentError,
    SharemigError,
    TransientError,
)
from storage.mover.dask_batch import BatchSpec, database_label, run_batch
from storage.mover.endpoints import normalize_url
from storage.mover.results import BatchResult
from storage.mover.throttle import Throttle
from storage.settings import get_settings

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 30.0
"""How long closing after an error waits for stopped batches to end (they stop at a file
boundary), so cleanup never races a writer on a worker."""


class DaskUnreachableError(TransientError):
    """The Dask scheduler named by `SHAREMIG_DASK_ADDRESS` did not answer, or has no worker."""


class DaskExecutor:
    """Submits batches to the cluster behind `client`; one per copy (it owns the client)."""

    throttle: Throttle | None = None

    def __init__(
        self,
        client: Any,
        address: str,
        source_url: str,
        dest_url: str,
        *,
        bandwidth_limit: int | None = None,
    ) -> None:
        from distributed import Event

        self.client = client
        self.address = address
        self.source_url, self.dest_url = normalize_url(source_url), normalize_url(dest_url)
        info = client.scheduler_info(n_workers=-1)["workers"]
        self.workers = max(1, sum(int(w.get("nthreads", 1)) for w in info.values()))
        self._limit = bandwidth_limit // self.workers if bandwidth_limit else None
        self._event_name = f"sharemig-stop-{uuid.uuid4().hex}"
        self._event = Event(self._event_name, client=client)
        self._futures: list[Any] = []
        self._closing = False

    @property
    def inline(self) -> bool:
        return False

    def describe(self) -> str:
        return f"the Dask cluster at {self.address} ({self.workers} worker thread(s))"

    def _spec(self, job_id: str, batch: int, db_url: str | None) -> BatchSpec:
        settings = get_settings()
        return BatchSpec(
            job_id=job_id,
            batch=batch,
            source_url=self.source_url,
            dest_url=self.dest_url,
            database=database_label(db_url or settings.db_url),
            stop_event=self._event_name,
            lease_ttl_s=max(1.0, settings.lease_ttl_s),
            bandwidth_limit=self._limit,
        )

    def submit(
        self,
        job_id: str,
        batch: int,
        *,
        db_url: str | None = None,
        should_stop: Callable[[], bool] | None = None,
        avoid: frozenset[str] = frozenset(),
    ) -> Future[BatchResult]:
        """Start one batch on any worker not in `avoid`. The worker reads its own
        `SHAREMIG_DATABASE_URL` (checked against `db_url`); `should_stop` stays here, the
        scheduler turns it into `stop()`."""
        restrict: list[str] | None = None
        if avoid:
            known = self.client.scheduler_info(n_workers=-1)["workers"]
            restrict = [w for w in known if w not in avoid]
            if not restrict:
                failed: Future[BatchResult] = Future()
                failed.set_exception(
                    PermanentError(
                        f"batch {batch}: no worker of the Dask cluster at {self.address} can "
                        f"run it (tried: {', '.join(sorted(avoid))}); see their errors above"
                    )
                )
                return failed
        dfut = self.client.submit(
            run_batch,
            self._spec(job_id, batch, db_url),
            key=f"sharemig-batch-{job_id[:8]}-{batch}-{uuid.uuid4().hex[:8]}",
            workers=restrict,
            allow_other_workers=False,
            pure=False,
        )
        self._futures.append(dfut)
        return self._bridge(dfut, batch)

    def _bridge(self, dfut: Any, batch: int) -> Future[BatchResult]:
        """A `concurrent.futures.Future` that follows `dfut` (the scheduler waits on those)."""
        from distributed import KilledWorker

        out: Future[BatchResult] = Future()
        out.set_running_or_notify_cancel()

        def done(f: Any) -> None:
            try:
                if f.status == "finished":
                    out.set_result(f.result())
                    return
                if f.status == "cancelled":
                    raise TransientError(
                        f"batch {batch}: the Dask scheduler at {self.address} dropped it"
                    )
                exc = f.exception()
                if isinstance(exc, SharemigError):
                    raise exc
                if isinstance(exc, KilledWorker):
                    raise TransientError(
                        f"batch {batch}: every Dask worker that ran it died ({exc})"
                    ) from exc
                raise PermanentError(
                    f"batch {batch} failed on the Dask cluster at {self.address}: "
                    f"{type(exc).__name__}: {exc} (does the worker have sharemig installed?)"
                ) from exc
            except BaseException as exc:
                if not out.done():
                    out.set_exception(exc)

        dfut.add_done_callback(done)
        return out

    def stop(self) -> None:
        self._event.set()

    def close(self, *, cancel: bool = False) -> None:
        if self._closing:
            return
        self._closing = True
        from distributed import wait

        running = [f for f in self._futures if not f.done()]
        if cancel and running:
            self.stop()
            try:
                wait(running, timeout=CLOSE_WAIT_S)
            except TimeoutError:
                log.warning(
                    "%d batch(es) still running on the Dask cluster at %s %g s after the stop",
                    sum(not f.done() for f in running),
                    self.address,
                    CLOSE_WAIT_S,
                )
            self.client.cancel([f for f in running if not f.done()])
        try:
            if all(f.done() for f in self._futures):
                self._event.clear()  # the event lives on the scheduler until cleared
        finally:
            self._futures.clear()
            self.client.close(timeout=get_settings().dask_connect_timeout_s)

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)


def connect(address: str, *, timeout: float | None = None) -> Any:
    """A `distributed.Client` on `address` with at least one worker, or `DaskUnreachableError`
    naming the address and how long it waited."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise InvalidInputError(
            f"a Dask scheduler is configured ({address}) but the `distributed` package is not "
            "installed here: pip install 'sharemig[dask]', or unset SHAREMIG_DASK_ADDRESS"
        ) from exc
    wait = timeout or get_settings().dask_connect_timeout_s
    try:
        client = Client(address, timeout=wait, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise DaskUnreachableError(
            f"the Dask scheduler at {address} did not answer within {wait:g} s ({exc}); "
            "start it (`dask scheduler`), correct SHAREMIG_DASK_ADDRESS / --dask-address, "
            "or unset it to copy on this host"
        ) from exc
    try:
        client.wait_for_workers(1, timeout=wait)
    except (OSError, TimeoutError) as exc:
        client.close()
        raise DaskUnreachableError(
            f"the Dask scheduler at {address} has no worker after {wait:g} s; start "
            "`dask worker " + address + "` on hosts that see the pools"
        ) from exc
    return client


def open_dask(
    address: str,
    source_url: str,
    dest_url: str,
    *,
    bandwidth_limit: int | None = None,
) -> DaskExecutor:
    """The executor for one copy on the Dask cluster at `address`."""
    if bandwidth_limit is None:
        bandwidth_limit = get_settings().bandwidth_limit_bytes
    client = connect(address)
    return DaskExecutor(client, address, source_url, dest_url, bandwidth_limit=bandwidth_limit)

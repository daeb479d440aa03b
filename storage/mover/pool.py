"""`BatchPool`: the local executor `BatchScheduler` runs `copy_batch` on (opened per copy).

Local→local batches run in worker processes (per-file Python work is CPU-bound and the GIL
would serialize it on threads); pairs involving another filesystem run on threads, since they
wait on the network and in-memory filesystems must stay in this process.

Workers are forked only from a process with no other thread. A Prefect flow run has threads
(API clients, log shipping, heartbeats), and a fork while one of them holds a lock (logging, a
DB pool, the import lock) leaves the child waiting on it forever, so there the workers come
from a forkserver that imported the mover once.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from storage.db import dispose_engines
from storage.mover.batch import copy_batch
from storage.mover.endpoints import open_endpoint
from storage.mover.local_copy import ram_backed
from storage.mover.pool_budget import BudgetSpec, PoolBudget
from storage.mover.results import BatchResult
from storage.mover.throttle import Pacer, Throttle, combined
from storage.mover.worker_main import MAIN_ENV
from storage.settings import get_settings, reset_settings

POLL_SECONDS = 0.25

_stop_event: Any = None
_throttle: Pacer | None = None


def _pacer(limit: int | None, budget: tuple[BudgetSpec, ...], db_url: str | None) -> Pacer | None:
    """This copier's own limit, and the pools' shared budgets."""
    return combined(
        Throttle(limit) if limit else None, PoolBudget(budget, db_url) if budget else None
    )


def _child_should_stop() -> bool:
    return bool(_stop_event is not None and _stop_event.is_set())


def _child_init(
    event: Any,
    env: dict[str, str],
    limit: int | None,
    budget: tuple[BudgetSpec, ...] = (),
    db_url: str | None = None,
) -> None:
    """Take the caller's `SHAREMIG_*` settings (a forkserver kept the environment it had),
    this worker's share of the bandwidth limit and the pools' shared budgets, for every batch
    it will copy."""
    global _stop_event, _throttle
    _stop_event = event
    for key in [k for k in os.environ if k.startswith("SHAREMIG_")]:
        del os.environ[key]
    os.environ.update(env)
    reset_settings()
    dispose_engines()
    _throttle = _pacer(limit, budget, db_url)


def _child_copy(job_id: str, batch: int, db_url: str | None) -> BatchResult:
    return copy_batch(
        job_id, batch, db_url=db_url, should_stop=_child_should_stop, throttle=_throttle
    )


def _process_context() -> Any:
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        # Nothing else runs here, so a fork is safe, and it costs no interpreter start-up.
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    main = _main_reference()
    if main:
        os.environ[MAIN_ENV] = main
    ctx.set_forkserver_preload(["storage.mover.worker_main", "storage.mover.pool"])
    return ctx


def _main_reference() -> str:
    """How multiprocessing will name this process's main module to each new worker."""
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name:
        return f"name:{name}"
    path = getattr(main, "__file__", None)
    return f"path:{os.path.normpath(path)}" if path else ""


def _prestart_forkserver(ctx: Any) -> None:
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        # Returns once the server process exists; its imports run there, in parallel with us.
        forkserver.ensure_running()


def prestart(source_url: str, dest_url: str) -> None:
    """Start the forkserver now when copying `source_url` to `dest_url` will need one, so its
    interpreter start and imports overlap the caller's walk instead of delaying the first
    batch (seconds in a Prefect flow run, whose main module imports Prefect)."""
    if open_endpoint(source_url).local and open_endpoint(dest_url).local:
        _prestart_forkserver(_process_context())


class BatchPool:
    """Runs `copy_batch` calls on `workers` processes (local pairs) or threads (the others).

    A process pool's workers share one stop event: `stop()` makes every running batch stop at
    its next file boundary (with CancelledError); the pool is for one copy job or migration.
    """

    def __init__(
        self,
        workers: int,
        *,
        processes: bool,
        bandwidth_limit: int | None = None,
        budget: tuple[BudgetSpec, ...] = (),
        db_url: str | None = None,
    ) -> None:
        self.workers = max(1, workers)
        self.processes = processes
        self.limit = bandwidth_limit // self.workers if bandwidth_limit else None
        """Each worker process's share of the limit."""
        self.budget = budget
        """The pools' shared budgets (`storage.mover.pool_budget`): every worker takes from
        the same buckets, so they need no splitting."""
        self.db_url = db_url
        self.throttle = _pacer(bandwidth_limit, budget, db_url)
        """The whole limit, shared by thread workers and batches run in this process."""
        self._pool: Executor | None = None
        self._event: Any = None
        self._lock = threading.Lock()

    @property
    def inline(self) -> bool:
        return self.workers <= 1

    def describe(self) -> str:
        kind = "processes" if self.processes else "threads"
        return f"this host's pool ({self.workers} {kind})"

    def _executor(self) -> Executor:
        with self._lock:
            if self._pool is None:
                if self.processes:
                    ctx = _process_context()
                    # Children open their own DB connections, never the caller's.
                    dispose_engines()
                    self._event = ctx.Event()
                    env = {k: v for k, v in os.environ.items() if k.startswith("SHAREMIG_")}
                    self._pool = ProcessPoolExecutor(
                        self.workers,
                        mp_context=ctx,
                        initializer=_child_init,
                        initargs=(self._event, env, self.limit, self.budget, self.db_url),
                    )
                else:
                    self._pool = ThreadPoolExecutor(
                        self.workers, thread_name_prefix="sharemig-copy"
                    )
            return self._pool

    def submit(
        self,
        job_id: str,
        batch: int,
        *,
        db_url: str | None = None,
        should_stop: Callable[[], bool] | None = None,
        avoid: frozenset[str] = frozenset(),
    ) -> Future[BatchResult]:
        """Start one batch. `should_stop` reaches thread workers only; for processes, the
        caller polls and calls `stop()` (see `run`). `avoid` is for remote executors: every
        worker here sees the same paths."""
        pool = self._executor()
        if self.processes:
            return pool.submit(_child_copy, job_id, batch, db_url)
        return pool.submit(
            copy_batch,
            job_id,
            batch,
            db_url=db_url,
            should_stop=should_stop,
            throttle=self.throttle,
        )

    def stop(self) -> None:
        if self._event is not None:
            self._event.set()

    def close(self, *, cancel: bool = False) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> BatchPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)


def open_pool(
    source_url: str,
    dest_url: str,
    *,
    workers: int | None = None,
    bandwidth_limit: int | None = None,
    budget: tuple[BudgetSpec, ...] = (),
    db_url: str | None = None,
) -> BatchPool:
    """The pool for copying `source_url` to `dest_url`: `settings.copy_workers` processes for
    local pairs (at most one per core into RAM), as many threads otherwise. `budget`: the
    pools' shared bandwidth budgets this copy takes from."""
    settings = get_settings()
    dest = open_endpoint(dest_url)
    processes = open_endpoint(source_url).local and dest.local and hasattr(os, "fork")
    if workers is None:
        workers = settings.copy_workers
        if processes and ram_backed(dest.root_bytes):
            # Copying into RAM is CPU-bound: one process per core. Onto a disk, more copies
            # in flight keep the device's queue full (cold ext4: 4 workers 1.26x `cp -a`,
            # 2 workers 1.49x).
            workers = min(workers, os.cpu_count() or 1)
    if bandwidth_limit is None:
        bandwidth_limit = settings.bandwidth_limit_bytes
    return BatchPool(
        workers, processes=processes, bandwidth_limit=bandwidth_limit, budget=budget, db_url=db_url
    )

"""A real Dask distributed cluster for tests: `dask scheduler` and `dask worker` processes.

Each worker is its own process with an environment built from nothing but PATH, its own
SHAREMIG_HOME and HOME, and the database URL: what a worker on another host would share
with the copy is the database and the pool paths, nothing else. A worker can be made blind
to a path (a private mount namespace with an empty tmpfs over it, root only), the way a host
that lacks a mount would be.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.kit.processes import free_port, stop_group

DASK = str(Path(sys.executable).with_name("dask"))
START_S = 180.0
"""A loaded 2-core machine takes tens of seconds to start a Dask process."""


@dataclass
class DaskWorker:
    name: str
    proc: subprocess.Popen[bytes]
    home: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    base: Path
    db_url: str
    workers: dict[str, DaskWorker] = field(default_factory=dict)

    def client(self) -> Any:
        from distributed import Client

        return Client(self.address, timeout=60, set_as_default=False)

    def start_worker(self, name: str, *, blind: Path | None = None) -> DaskWorker:
        """One `dask worker` process (one thread, no nanny: a killed worker stays dead)."""
        home = self.base / name
        home.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "SHAREMIG_HOME": str(home),
            "SHAREMIG_DATABASE_URL": self.db_url,
        }
        argv = [DASK, *worker_args(name, self.address, home)]
        if blind is not None:
            # Its own mount namespace: an empty tmpfs hides `blind` from this worker alone.
            script = 'mount -t tmpfs -o size=1m blind "$1" && shift && exec "$@"'
            shell = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
            argv = [*shell, str(blind), *argv]
        log_path = self.base / f"{name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        worker = DaskWorker(name, proc, home, log_path)
        self.workers[name] = worker
        return worker

    def wait_for_workers(self, n: int) -> dict[str, str]:
        """Block until `n` workers are connected; their addresses by name."""
        with self.client() as client:
            client.wait_for_workers(n, timeout=START_S)
            return self.addresses(client)

    @staticmethod
    def addresses(client: Any) -> dict[str, str]:
        info = client.scheduler_info(n_workers=-1)["workers"]
        return {str(w["name"]): addr for addr, w in info.items()}

    def kill9(self, name: str) -> None:
        worker = self.workers[name]
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(timeout=30)


def worker_args(name: str, address: str, home: Path) -> list[str]:
    return [
        "worker",
        address,
        "--nthreads",
        "1",
        "--no-nanny",
        "--name",
        name,
        "--local-directory",
        str(home / "dask"),
        "--no-dashboard",
    ]


@contextmanager
def dask_cluster(base: Path, db_url: str) -> Iterator[DaskCluster]:
    """A scheduler on a free port (workers are started by the test); all stopped after."""
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = base / "scheduler.log"
    with log_path.open("wb") as log:
        scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cluster = DaskCluster(f"tcp://127.0.0.1:{port}", scheduler, base, db_url)
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert scheduler.poll() is None, log_path.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"no scheduler after {START_S}s"
                time.sleep(0.2)
        yield cluster
    finally:
        # Workers first, while their scheduler still answers their goodbye: a worker whose
        # scheduler went first spends its close timeout trying to reach it.
        for proc in [w.proc for w in cluster.workers.values()] + [scheduler]:
            stop_group(proc, timeout=30)


def batches_by_worker(client: Any, since: float, names: dict[str, str]) -> dict[str, int]:
    """Copy batches finished per worker (`names`: address to name), from the scheduler's task
    stream since `since`."""
    counts: dict[str, int] = {}
    for task in client.get_task_stream(start=since):
        if str(task["key"]).startswith("sharemig-batch") and task.get("status") == "OK":
            name = names.get(task["worker"], task["worker"])
            counts[name] = counts.get(name, 0) + 1
    return counts

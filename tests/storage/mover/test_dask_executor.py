"""`run_copy` on a real Dask cluster (`dask scheduler` + `dask worker` processes, each with
its own environment): batches spread over the workers, progress never goes backwards, a stop
reaches running batches, a worker without a pool path has its batches retried elsewhere,
and a scheduler that does not answer is named with the wait.

The cluster is shared by the module (a Dask process takes seconds to start, tens of seconds
on a loaded machine: those tests are slow); its workers know the module's SQLite database
only, so these tests run on SQLite in every CI step.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.db import upgrade
from storage.errors import CancelledError
from storage.mover import job_progress, run_copy
from storage.mover.dask_executor import DaskUnreachableError
from storage.mover.results import Progress
from storage.settings import reset_settings
from tests.kit.bench_kit import gen_tree, treecmp
from tests.kit.dask_cluster import DaskCluster, batches_by_worker, dask_cluster
from tests.kit.processes import free_port

BATCH_FILES = 200
"""The `small` tree (~2,100 files) makes about a dozen batches."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    base = tmp_path_factory.mktemp("dask")
    url = f"sqlite:///{base / 'sharemig.db'}"
    upgrade(url)
    (base / "hidden").mkdir()
    with dask_cluster(base, url) as running:
        running.start_worker("a")
        running.start_worker("b")
        expected = 2
        if os.geteuid() == 0 and shutil.which("unshare"):
            running.start_worker("blind", blind=base / "hidden")
            expected = 3
        running.wait_for_workers(expected)
        yield running


@pytest.fixture
def on_cluster(cluster: DaskCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaskCluster]:
    """This test's settings: the cluster's database and scheduler, small batches."""
    monkeypatch.setenv("SHAREMIG_DATABASE_URL", cluster.db_url)
    monkeypatch.setenv("SHAREMIG_DASK_ADDRESS", cluster.address)
    monkeypatch.setenv("SHAREMIG_BATCH_MAX_FILES", str(BATCH_FILES))
    reset_settings()
    yield cluster
    reset_settings()


def _batch_workers(client: Any, since: float) -> dict[str, int]:
    """Batches finished per worker name, from the scheduler's task stream."""
    names = {addr: str(w["name"]) for addr, w in client.scheduler_info(-1)["workers"].items()}
    return batches_by_worker(client, since, names)


@pytest.mark.slow
def test_batches_run_on_every_worker_and_the_copy_is_identical(
    on_cluster: DaskCluster, tmp_path: Path
) -> None:
    gen_tree(tmp_path / "src", "small")
    seen: list[int] = []
    with on_cluster.client() as client:
        client.get_task_stream()  # installs the scheduler's task-stream plugin
        since = time.time()
        summary = run_copy(
            str(tmp_path / "src"), str(tmp_path / "dst"), progress=lambda p: seen.append(p.percent)
        )
        per_worker = _batch_workers(client, since)
    assert summary.complete and not summary.failed, summary
    assert treecmp(tmp_path / "src", tmp_path / "dst").returncode == 0
    assert {"a", "b"} <= set(per_worker), per_worker
    assert seen == sorted(seen) and seen[-1] == 100


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_a_worker_without_the_pool_path_fails_its_batches_and_they_run_elsewhere(
    on_cluster: DaskCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = on_cluster.base / "hidden" / "src"  # the `blind` worker sees an empty tmpfs here
    gen_tree(src, "small")
    try:
        with caplog.at_level(logging.WARNING, logger="storage.mover.schedule"):
            summary = run_copy(str(src), str(tmp_path / "dst"))
        assert summary.complete and not summary.failed, summary
        assert treecmp(src, tmp_path / "dst").returncode == 0
        refusals = [
            r.getMessage() for r in caplog.records if "has no source path" in r.getMessage()
        ]
        assert refusals, "no batch landed on the blind worker"
        assert f"has no source path {src}" in refusals[0]
        assert "retried on another worker" in refusals[0]
    finally:
        shutil.rmtree(src)


@pytest.mark.slow
def test_a_stop_reaches_the_running_batches(on_cluster: DaskCluster, tmp_path: Path) -> None:
    gen_tree(tmp_path / "src", "small")
    stop_at: list[float] = []

    def progress(p: Progress) -> None:
        if p.bytes_verified and not stop_at:
            stop_at.append(time.monotonic())

    # 1 MiB/s over 140 MiB: a copy that would take minutes, stopped once bytes are verified.
    with pytest.raises(CancelledError):
        run_copy(
            str(tmp_path / "src"),
            str(tmp_path / "dst"),
            job_id="dask-stop",
            progress=progress,
            should_stop=lambda: bool(stop_at),
            bandwidth_limit=1 << 20,
        )
    took = time.monotonic() - stop_at[0]
    with on_cluster.client() as client:
        busy = [k for keys in client.processing().values() for k in keys if "sharemig" in str(k)]
    assert busy == []  # run_copy returned once every batch had stopped, not before
    p = job_progress("dask-stop")
    assert p.files_verified < p.files_planned  # the stop cut the copy short
    print(f"stop -> every Dask batch ended: {took:.1f} s")


def test_a_scheduler_that_does_not_answer_is_named_with_the_wait(
    sharemig_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("SHAREMIG_DASK_ADDRESS", address)
    monkeypatch.setenv("SHAREMIG_DASK_CONNECT_TIMEOUT_S", "2")
    reset_settings()
    upgrade(f"sqlite:///{sharemig_home / 'sharemig.db'}")
    (tmp_path / "src").mkdir()
    with pytest.raises(DaskUnreachableError) as err:
        run_copy(str(tmp_path / "src"), str(tmp_path / "dst"))
    assert f"the Dask scheduler at {address} did not answer within 2 s" in str(err.value)


@pytest.mark.slow
def test_an_in_memory_copy_says_it_stays_on_this_host(
    on_cluster: DaskCluster, caplog: pytest.LogCaptureFixture
) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/dask-mem/src/a.txt", b"hello")
    with caplog.at_level(logging.WARNING, logger="storage.mover.executor"):
        summary = run_copy("memory://dask-mem/src", "memory://dask-mem/dst")
    assert summary.complete
    assert fs.cat("/dask-mem/dst/a.txt") == b"hello"
    assert any(
        on_cluster.address in r.getMessage() and "runs on this host's pool" in r.getMessage()
        for r in caplog.records
    )

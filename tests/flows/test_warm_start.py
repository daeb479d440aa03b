"""Warm flow-run starts (flows/zygote.py, flows/warm_launch.py) on a real Prefect server.

The test plays the worker's part: it runs the deployments' command (the launcher) with the
environment a process worker gives it, for a flow run created Pending (no worker picks it).
The flow (tests/flows/warm_probe.py) reports the process that runs it, then waits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from flows.warm_launch import SOCKET_ENV
from flows.zygote import ping, socket_path
from tests.kit.waiting import wait_for

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def zygote(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A zygote as `sharemig up` starts one; yields (socket, process, log path)."""
    home = tmp_path_factory.mktemp("warm-home")
    path = socket_path(home, 1)
    log = home / "zygote.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.zygote", "serve", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SHAREMIG_HOME": str(home)},
        )
    try:
        wait_for(lambda: proc.poll() is None and ping(path), timeout=120, what="the zygote")
        yield path, proc, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def probe_deployment(prefect_server: str) -> UUID:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.create_deployment(
            flow_id=client.create_flow_from_name("warm-probe"),
            name="warm-probe",
            entrypoint="warm_probe.report_and_wait",
            pull_steps=[],
        )


def _pending_run(deployment: UUID, tmp_path: Path) -> tuple[str, Path, Path]:
    from prefect import get_client
    from prefect.states import Pending

    report, release = tmp_path / "report.json", tmp_path / "release"
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployment,
            parameters={"report": str(report), "release": str(release)},
            state=Pending(),
        )
    return str(run.id), report, release


def _launch(run_id: str, socket: Path, **env: str) -> subprocess.Popen[str]:
    """The launcher as a process worker starts it: the worker's env plus the run's."""
    return subprocess.Popen(
        [sys.executable, "-m", "flows.warm_launch"],
        env={**os.environ, SOCKET_ENV: str(socket), "PREFECT__FLOW_RUN_ID": run_id, **env},
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _state(run_id: str) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id)).state


def _run_log(run_id: str) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)]))
        )
    return "\n".join(log.message for log in logs)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def test_a_warm_run_is_a_zygote_child_with_the_runs_env_and_completes(
    zygote: Any, probe_deployment: UUID, tmp_path: Path
) -> None:
    path, proc, log = zygote
    run_id, report, release = _pending_run(probe_deployment, tmp_path)
    release.touch()
    launcher = _launch(
        run_id, path, SHAREMIG_PROBE="per-run", PREFECT_LOGGING_EXTRA_LOGGERS="warm_probe"
    )
    out, _ = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, out
    facts = json.loads(report.read_text())
    assert facts["ppid"] == proc.pid and facts["pid"] != launcher.pid  # forked, not exec'd
    assert facts["probe_env"] == "per-run" and facts["cwd"] == str(HERE)
    assert facts["extra_loggers"] == ["warm_probe"]  # settings rebuilt from the run's env
    assert _state(run_id).is_completed()
    assert f"run {run_id} is pid {facts['pid']}" in log.read_text()
    assert "started cold" not in _run_log(run_id)


def test_killing_the_launcher_kills_the_run_and_a_sigterm_reaches_it(
    zygote: Any, probe_deployment: UUID, tmp_path: Path
) -> None:
    path, proc, _ = zygote
    killed, report_a, _ = _pending_run(probe_deployment, tmp_path / "a")
    termed, report_b, _ = _pending_run(probe_deployment, tmp_path / "b")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _launch(killed, path), _launch(termed, path)
    wait_for(lambda: report_a.exists() and report_b.exists(), timeout=300, what="both runs")
    run_a = json.loads(report_a.read_text())["pid"]
    run_b = json.loads(report_b.read_text())["pid"]

    first.kill()  # kill -9: no chance to relay anything; the zygote sees its socket close
    first.wait(timeout=10)
    wait_for(lambda: not _alive(run_a), timeout=30, what="the run of the killed launcher")

    second.send_signal(signal.SIGTERM)  # what a worker sends to stop a flow run
    second.wait(timeout=120)
    assert second.returncode != 0
    assert not _alive(run_b)
    assert proc.poll() is None and ping(path)  # the zygote serves on


def test_with_no_zygote_the_run_starts_cold_and_its_log_says_so(
    prefect_server: str, probe_deployment: UUID, tmp_path: Path
) -> None:
    run_id, report, release = _pending_run(probe_deployment, tmp_path)
    release.touch()
    missing = tmp_path / "no-zygote.sock"
    launcher = _launch(run_id, missing)
    out, _ = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, out
    assert json.loads(report.read_text())["pid"] == launcher.pid  # the launcher became it
    assert _state(run_id).is_completed()
    assert f"started cold: the zygote at {missing} does not answer" in _run_log(run_id)

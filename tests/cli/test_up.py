"""`sharemig up`, `sharemig demo` and `sharemig approve` as an operator runs them, in order:
up publishes its endpoints and refuses a second up; demo stops at the approval wait and the
CLI approval finishes it; Ctrl-C stops every process, a running flow run's included.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.demo_tree import write_demo_tree
from tests.kit.flow_runs import processes_for_run
from tests.kit.up_process import SHAREMIG, WALK_LIMIT, UpProcess, pids_of_home, run_up, user_env
from tests.kit.waiting import wait_for, wait_task_state

SCALE = 0.3  # ~90 files, 14 MiB: the same tree shape as the default demo, in less CI time


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    with run_up(tmp_path_factory.mktemp("up") / "home") as running:
        yield running


def _client(up: UpProcess, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{up.endpoints['api_url']}/v2/{up.endpoints['project_id']}",
        headers={"X-Auth-Token": token, "X-OpenStack-Manila-API-Version": "2.99"},
        timeout=30,
    )


def _wait_share(up: UpProcess, share_id: str, *states: str) -> dict[str, Any]:
    with _client(up, up.endpoints["admin_token"]) as c:
        return wait_task_state(lambda: c.get(f"/shares/{share_id}").json()["share"], *states)


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _other_up(home: Path, api_port: int, prefect_port: int) -> subprocess.CompletedProcess[str]:
    argv = [SHAREMIG, "up", "--home", str(home), "--api-port", str(api_port)]
    return subprocess.run(
        [*argv, "--prefect-port", str(prefect_port)],
        capture_output=True,
        text=True,
        env=user_env(home),
        timeout=60,
    )


def test_up_publishes_its_endpoints_and_refuses_a_second_up(up: UpProcess, tmp_path: Path) -> None:
    ep = up.endpoints
    assert set(ep) >= {"api_url", "prefect_url", "project_id", "admin_token", "member_token"}
    assert stat.S_IMODE((up.home / "endpoints.json").stat().st_mode) == 0o600
    assert httpx.get(f"{ep['prefect_url']}/api/health", timeout=10).status_code == 200
    assert httpx.get(f"{ep['api_url']}/", timeout=10).status_code == 300
    with _client(up, ep["member_token"]) as member, _client(up, "not-a-token") as stranger:
        assert member.get("/shares").status_code == 200
        assert stranger.get("/shares").status_code == 401
    with _client(up, ep["admin_token"]) as admin:
        pools = admin.get("/scheduler-stats/pools/detail").json()["pools"]
    drivers = [p["capabilities"]["driver_name"] for p in pools]
    assert drivers.count("localfs") >= 2 and "fsspec" in drivers  # the demo inventory

    other = tmp_path / "other-home"
    busy = _other_up(other, up.api_port, up.prefect_port)
    assert busy.returncode == 1
    assert f"port {up.prefect_port}" in " ".join(busy.stderr.split())
    assert not (other / "endpoints.json").exists() and not pids_of_home(other)

    from tests.kit.processes import free_port

    same_home = _other_up(up.home, free_port(), free_port())
    assert same_home.returncode == 1
    assert "already running" in " ".join(same_home.stderr.split())
    assert up.proc.poll() is None and up.endpoints == ep


def test_demo_waits_for_approval_and_the_cli_approval_finishes_it(
    up: UpProcess, tmp_path: Path
) -> None:
    demo = up.sharemig("demo", "--scale", str(SCALE))
    out = " ".join(demo.stdout.split())
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "waiting for approval" in out
    share_id = re.search(r"sharemig approve (\S+)", out)[1]  # type: ignore[index]
    run_url = re.search(r"open (http\S+/runs/flow-run/[0-9a-f-]{36})", out)
    assert run_url and run_url[1].startswith(up.endpoints["prefect_url"])
    waiting = _wait_share(up, share_id, "data_copying_completed")
    assert waiting["status"] == "migrating"

    approve = up.sharemig("approve", share_id)
    assert approve.returncode == 0, approve.stderr
    done = _wait_share(up, share_id, "migration_success")
    assert done["status"] == "available" and done["host"] != waiting["host"]

    # The share's files arrived intact at its new export location.
    with _client(up, up.endpoints["admin_token"]) as admin:
        export = admin.get(f"/shares/{share_id}/export_locations").json()["export_locations"]
    moved = Path(export[0]["path"].split(":", 1)[1])
    expected = tmp_path / "expected"
    stats = write_demo_tree(expected, scale=SCALE)
    assert _tree(moved) == _tree(expected) and len(_tree(moved)) == stats.files
    # Both of the run's processes (phase 1, and the resume after approval) were forked warm
    # by the worker's zygote, not started afresh.
    run_id = run_url[1].rsplit("/", 1)[1]
    forks = (up.home / "logs" / "zygote-1.log").read_text().count(f"run {run_id} is pid")
    assert forks == 2, (up.home / "logs" / "zygote-1.log").read_text()
    listed = json.loads(up.sharemig("shares", "--json").stdout)
    assert any(r["id"] == share_id and r["task_state"] == "migration_success" for r in listed)


def test_ctrl_c_stops_every_process_a_running_flow_included(up: UpProcess) -> None:
    with _client(up, up.endpoints["admin_token"]) as admin:
        share = admin.post("/shares", json={"share": {"share_proto": "NFS", "size": 1}})
        share_id, source = share.json()["share"]["id"], share.json()["share"]["host"]
        export = admin.get(f"/shares/{share_id}/export_locations").json()["export_locations"]
        pools = [p["name"] for p in admin.get("/scheduler-stats/pools").json()["pools"]]
    root = Path(export[0]["path"].split(":", 1)[1])
    write_demo_tree(root, scale=SCALE)
    # Six times `up`'s walk limit in entries: the run plans for ~5 s after its process
    # appears, so Ctrl-C lands while it runs (a small tree could be planned, copied and
    # suspended, its process gone, before the interrupt).
    (root / "many").mkdir()
    for i in range(6 * WALK_LIMIT):
        (root / "many" / f"e{i:05d}").touch()
    dest = next(p for p in pools if p != source and "localfs" in p)
    started = up.sharemig("migrate", share_id, dest, "--force-host-assisted", "--json")
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["flow_run_id"]
    # The worker has started the flow run's process.
    wait_for(lambda: processes_for_run(run_id), timeout=60, interval=0.1, what="the flow run")
    assert len(pids_of_home(up.home)) >= 4  # server, worker, shim, flow run (at least)
    assert processes_for_run(run_id), "the flow run ended before the interrupt"

    assert up.interrupt() == 0, up.log()
    assert "stopped" in up.log()
    assert pids_of_home(up.home) == [], up.log()
    assert processes_for_run(run_id) == []

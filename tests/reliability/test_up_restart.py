"""`sharemig up` killed with SIGKILL alone (the OOM killer's way) in the middle of a copy:
its children go with it, a new `up` on the same data dir and ports stops whatever the old one
left behind, says so, starts, and the migration resumes to `migration_success` with the tree
intact (treecmp), resumed once, never run twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.supervisor import pids_with_env
from cli.up_runfile import read_run
from cli.up_stack import MARKER_ENV
from tests.kit.bench_kit import treecmp
from tests.kit.processes import children_of, free_port
from tests.kit.reliability import make_tree
from tests.kit.up_process import UpProcess, pids_of_home, run_up

pytestmark = pytest.mark.slow

# Paced so the kill lands mid-copy on any machine: ~6 MiB at 512 KiB/s after a 1 s burst.
COPY_ENV = {
    "SHAREMIG_BANDWIDTH_LIMIT_BYTES": str(512 * 1024),
    "SHAREMIG_BATCH_MAX_FILES": "8",
    "SHAREMIG_COPY_WORKERS": "2",
    # The killed run's lease runs out before the next `up`'s first recovery pass.
    "SHAREMIG_LEASE_TTL_S": "3",
}
CHILDREN_DIE_S = 30.0  # SIGTERM from the kernel, then each child's own shutdown


def _until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(interval)


def _client(up: UpProcess) -> httpx.Client:
    ep = up.endpoints
    return httpx.Client(
        base_url=f"{ep['api_url']}/v2/{ep['project_id']}",
        headers={"X-Auth-Token": ep["admin_token"], "X-OpenStack-Manila-API-Version": "2.99"},
        timeout=30,
    )


def _progress(up: UpProcess, share_id: str) -> dict[str, Any]:
    with _client(up) as c:
        share = c.get(f"/shares/{share_id}").json()["share"]
        body: dict[str, Any] = {"task_state": share["task_state"], "details": {}}
        if share["task_state"] not in (None, "migration_starting", "migration_in_progress"):
            got = c.get(f"/shares/{share_id}/migration-progress")
            if got.status_code == 200:
                body["details"] = got.json().get("details", {})
        return body


def _state(up: UpProcess, share_id: str) -> str | None:
    return _progress(up, share_id)["task_state"]  # type: ignore[no-any-return]


def _ended_runs(up: UpProcess) -> list[dict[str, Any]] | None:
    """Every flow run of the stack, once none is live (the last one returns just after it
    records the success), else None."""
    url = f"{up.endpoints['prefect_api_url']}/flow_runs/filter"
    rows = httpx.post(url, json={}, timeout=10).json()
    runs = [{"id": r["id"], "state": r["state_type"], "name": r["name"]} for r in rows]
    live = {"RUNNING", "PENDING", "SCHEDULED", "PAUSED", "CANCELLING"}
    return None if any(r["state"] in live for r in runs) else runs


def _children_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z":
            alive.append(pid)
    return alive


def _listener(port: int) -> int:
    """The process listening on 127.0.0.1:`port` (from /proc/net/tcp and its fds)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:
            continue
    raise AssertionError(f"nothing listens on port {port}")


def test_up_killed_mid_copy_restarts_stops_its_orphans_and_the_migration_succeeds(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    ports = (free_port(), free_port())
    with run_up(home, ports=ports, extra_env=COPY_ENV, log_name="up-1.log") as first:
        with _client(first) as admin:
            made = admin.post("/shares", json={"share": {"share_proto": "NFS", "size": 1}})
            share = made.json()["share"]
            share_id, source_pool = share["id"], share["host"]
            export = admin.get(f"/shares/{share_id}/export_locations").json()
            pools = [p["name"] for p in admin.get("/scheduler-stats/pools").json()["pools"]]
        src = Path(export["export_locations"][0]["path"].split(":", 1)[1])
        make_tree(src, files=64, size=96 * 1024)
        reference = tmp_path / "reference"
        subprocess.run(["cp", "-a", str(src), str(reference)], check=True)
        dest = next(p for p in pools if p != source_pool and "localfs" in p)
        started = first.sharemig("migrate", share_id, dest, "--force-host-assisted", "--json")
        assert started.returncode == 0, started.stderr
        first_run = json.loads(started.stdout)["flow_run_id"]

        def mid_copy() -> bool:
            now = _progress(first, share_id)
            assert now["task_state"] != "data_copying_completed", f"copy ended first: {now}"
            d = now["details"]
            return bool(
                now["task_state"] == "data_copying_in_progress"
                and 0 < (d.get("files_verified") or 0) < (d.get("files_total") or 0) // 2
            )

        _until(mid_copy, 120, "the copy to be under way", interval=0.1)
        children = children_of(first.proc.pid)
        marker = read_run(home)
        assert marker is not None and marker.pid == first.proc.pid
        # One child that will not act on a SIGTERM (hung, stopped, slow): the API shim, which
        # holds the API port the next `up` needs.
        shim = _listener(first.api_port)
        assert shim in children
        os.kill(shim, signal.SIGSTOP)
        os.kill(first.proc.pid, signal.SIGKILL)  # up alone: not its process groups
        first.proc.wait(timeout=10)
        killed_at = time.monotonic()
        # PR_SET_PDEATHSIG: the server and worker get SIGTERM from the kernel and exit.
        others = [pid for pid in children if pid != shim]
        _until(lambda: not _children_alive(others), CHILDREN_DIE_S, "up's children to exit")
        died_in = time.monotonic() - killed_at
        left = pids_of_home(home)
        print(f"children exited {died_in:.1f}s after up's SIGKILL; left behind: {left}")
        assert shim in left
        # Inside the first `with`: its clean-up would SIGKILL what the second `up` must find.

        with run_up(home, ports=ports, extra_env=COPY_ENV, log_name="up-2.log") as second:
            log = " ".join(second.log().split())
            assert "already in use" not in log
            for pid in left:
                assert f"pid {pid}" in log, log
            if left:
                assert "left running by the previous `sharemig up`" in log, log
            # Nothing of the first `up` survived the second one's start.
            assert pids_with_env(MARKER_ENV, marker.marker) == []

            def waiting() -> bool:
                now = _progress(second, share_id)
                assert now["task_state"] not in ("migration_error", "migration_cancelled"), now
                return bool(now["task_state"] == "data_copying_completed")

            _until(waiting, 180, "the resumed copy to finish")
            approve = second.sharemig("approve", share_id)
            assert approve.returncode == 0, approve.stderr
            _until(lambda: _state(second, share_id) == "migration_success", 120, "the success")
            log = " ".join(second.log().split())
            assert log.count(f"of share {share_id}: resume") == 1, log
            runs = _until(lambda: _ended_runs(second), 60, "every flow run to end")
            with _client(second) as admin:
                export = admin.get(f"/shares/{share_id}/export_locations").json()
        moved = Path(export["export_locations"][0]["path"].split(":", 1)[1])
        cmp = treecmp(reference, moved)
        assert cmp.returncode == 0, cmp.stdout[-2000:]
        # The killed run is Crashed and was never run on: recovery started one run after it.
        states = {r["id"]: r["state"] for r in runs}
        print(f"flow runs: {sorted(states.values())}")
        assert states[first_run] == "CRASHED", runs

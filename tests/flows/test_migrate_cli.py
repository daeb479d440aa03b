"""The `sharemig` migration commands, run as a real subprocess against the session worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit.prefect_service import POOL_A, POOL_B
from tests.kit.shares import db_share, new_share, share_row
from tests.kit.waiting import wait_task_state

pytestmark = pytest.mark.usefixtures("service_env")

SHAREMIG = str(Path(sys.executable).with_name("sharemig"))


def sharemig(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SHAREMIG, *args], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )


def test_migrate_status_approve_from_the_command_line() -> None:
    share = new_share(POOL_A)
    (share.path / "note.txt").write_text("via cli\n")
    out = sharemig("migrate", share.share_id, POOL_B, "--force-host-assisted", "--json")
    assert out.returncode == 0, out.stderr
    started = json.loads(out.stdout)
    assert started["flow_run_id"] and not started["noop"]

    wait_task_state(db_share(share.share_id), "data_copying_completed")
    status = sharemig("status", share.share_id, "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["task_state"] == "data_copying_completed"
    assert shown["total_progress"] == 100 and shown["destination"] == POOL_B

    early = sharemig("cancel", "no-such-share")
    assert early.returncode == 1 and "could not be found" in " ".join(early.stderr.split())

    ok = sharemig("approve", share.share_id, "--reason", "cli says yes")
    assert ok.returncode == 0, ok.stderr
    row = wait_task_state(db_share(share.share_id), "migration_success")
    assert row["host"] == POOL_B
    again = sharemig("approve", share.share_id)
    assert again.returncode == 1 and "already completed" in " ".join(again.stderr.split())
    listed = json.loads(sharemig("shares", "--json").stdout)
    assert any(r["id"] == share.share_id and r["host"] == POOL_B for r in listed)
    assert share_row(share.share_id)["status"] == "available"

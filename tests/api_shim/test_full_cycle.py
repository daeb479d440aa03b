"""Whole migrations driven by the real clients through a real shim, Prefect server and worker.

python-manilaclient (at 2.98, and at 2.95 where the migration calls are experimental) and the
`openstack share migration ...` CLI, unchanged, against `uvicorn api_shim.app`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit import shares
from tests.kit.manila_api import OSC_NO_GUARANTEES
from tests.kit.prefect_service import POOL_A, POOL_B
from tests.kit.shim_server import PROJECT, ShimServer, run_shim
from tests.kit.waiting import wait_task_state

OPENSTACK = str(Path(sys.executable).with_name("openstack"))


@pytest.fixture(scope="module")
def live_shim(worker: int, service_home: Path) -> Iterator[ShimServer]:
    """The shim on the worker's data dir, with the session's Prefect server behind it."""
    with run_shim(service_home, dict(os.environ)) as server:
        yield server


def manila(shim: ShimServer, version: str = "2.98") -> Any:
    from manilaclient import client

    return client.Client(
        version, input_auth_token=shim.tokens["admin"], service_catalog_url=shim.endpoint()
    )


def data_dir(export_path: str) -> Path:
    """The localfs export `host:/path` is the instance's directory on this machine."""
    return Path(export_path.split(":", 1)[1])


def other_pool(host: str) -> str:
    return POOL_B if host == POOL_A else POOL_A


def new_share(shim: ShimServer, name: str, pool: str = POOL_A) -> str:
    """A share of the demo project on `pool`. Placed explicitly: this session's inventory
    also holds a deliberately broken pool (for the flows tests) that placement could pick."""
    return shares.new_share(pool, project=PROJECT, name=name, db_url=shim.db_url).share_id


def test_python_manilaclient_full_cycle(live_shim: ShimServer) -> None:
    c = manila(live_shim)
    share = c.shares.get(new_share(live_shim, "cycle-python"))
    src = c.shares.get(share.id)
    assert (src.status, src.task_state) == ("available", None)
    (old_export,) = c.share_export_locations.list(share.id)
    (data_dir(old_export.path) / "hello.txt").write_text("moved by sharemig\n")
    (data_dir(old_export.path) / "sub").mkdir()
    (data_dir(old_export.path) / "sub" / "b.bin").write_bytes(os.urandom(70_000))
    dest = other_pool(src.host)
    assert dest in [p.name for p in c.pools.list()]  # `manila pool-list` shows where to go

    resp, _ = c.shares.migration_start(share, dest, True, False, False, False, False)
    assert resp.status_code == 202
    migrating = c.shares.get(share.id)
    assert migrating.status == "migrating" and migrating.host == src.host

    done = wait_task_state(lambda: c.shares.get(share.id), "data_copying_completed")
    assert (done.status, done.host) == ("migrating", src.host)  # nothing switches by itself
    resp, progress = c.shares.migration_get_progress(share)
    assert resp.status_code == 200
    assert progress["total_progress"] == 100
    assert progress["task_state"] == "data_copying_completed"
    assert isinstance(progress["details"], dict)
    # The destination's export locations stay hidden until the switchover.
    assert [e.path for e in c.share_export_locations.list(share.id)] == [old_export.path]

    resp, _ = c.shares.migration_complete(share)
    assert resp.status_code == 202
    final = wait_task_state(lambda: c.shares.get(share.id), "migration_success")
    assert (final.status, final.host) == ("available", dest)
    (new_export,) = c.share_export_locations.list(share.id)
    assert new_export.path != old_export.path
    assert (data_dir(new_export.path) / "hello.txt").read_text() == "moved by sharemig\n"
    assert (data_dir(new_export.path) / "sub" / "b.bin").stat().st_size == 70_000
    assert not data_dir(old_export.path).exists()


@pytest.mark.slow
def test_python_manilaclient_cancel_at_295_experimental(live_shim: ShimServer) -> None:
    c = manila(live_shim, "2.95")  # the version python-manilaclient's head caps itself at
    share = c.shares.get(new_share(live_shim, "cycle-cancel", POOL_B))
    src = c.shares.get(share.id)
    dest = other_pool(src.host)
    c.shares.migration_start(share, dest, False, False, False, False, False)
    wait_task_state(lambda: c.shares.get(share.id), "migration_driver_phase1_done")
    _, progress = c.shares.migration_get_progress(share)  # the POST action at 2.95
    assert progress["total_progress"] == 100
    resp, _ = c.shares.migration_cancel(share)
    assert resp.status_code == 202
    final = wait_task_state(lambda: c.shares.get(share.id), "migration_cancelled")
    assert (final.status, final.host) == ("available", src.host)
    # Once cancelled, a second cancel and a complete are refused with 400.
    from manilaclient.common.apiclient import exceptions

    with pytest.raises(exceptions.BadRequest):
        c.shares.migration_cancel(share)
    with pytest.raises(exceptions.BadRequest):
        c.shares.migration_complete(share)


def osc(shim: ShimServer, *args: str, version: str | None = None) -> str:
    cmd = [
        OPENSTACK,
        "--os-auth-type",
        "admin_token",
        "--os-endpoint",
        shim.endpoint(PROJECT),
        "--os-token",
        shim.tokens["admin"],
    ]
    if version:
        cmd += ["--os-share-api-version", version]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}{done.stdout}"
    return done.stdout


def osc_share(shim: ShimServer, share_id: str) -> dict[str, Any]:
    return dict(json.loads(osc(shim, "share", "show", share_id, "-f", "json")))


def wait_over_http(shim: ShimServer, share_id: str, *states: str) -> None:
    """Poll over HTTP (an `openstack` process per poll would cost seconds each)."""
    with shim.client("admin") as c:
        wait_task_state(lambda: c.get(f"/v2/demo/shares/{share_id}").json()["share"], *states)


def test_openstack_cli_full_cycle(live_shim: ShimServer) -> None:
    share_id = new_share(live_shim, "cycle-osc")
    src = osc_share(live_shim, share_id)
    dest = other_pool(src["host"])
    flags = list(OSC_NO_GUARANTEES)
    osc(live_shim, "share", "migration", "start", *flags, share_id, dest)
    wait_over_http(live_shim, share_id, *PHASE1_DONE)
    shown = osc(live_shim, "share", "migration", "show", share_id, "-f", "json")
    assert json.loads(shown)["total_progress"] == 100  # the GET form at OSC's default 2.98
    osc(live_shim, "share", "migration", "complete", share_id)
    wait_over_http(live_shim, share_id, "migration_success")
    final = osc_share(live_shim, share_id)
    assert (final["status"], final["host"]) == ("available", dest)


@pytest.mark.slow
def test_openstack_cli_cancel_by_name(live_shim: ShimServer) -> None:
    # By name: OSC resolves it through the shares list (all_tenants, is_soft_deleted queries).
    new_share(live_shim, "cycle-osc-cancel", POOL_B)
    src = osc_share(live_shim, "cycle-osc-cancel")
    flags = ["--force-host-assisted-migration", "True", *OSC_NO_GUARANTEES]
    osc(
        live_shim,
        "share",
        "migration",
        "start",
        *flags,
        "cycle-osc-cancel",
        other_pool(src["host"]),
    )
    wait_over_http(live_shim, src["id"], "data_copying_completed")
    osc(live_shim, "share", "migration", "cancel", "cycle-osc-cancel")
    wait_over_http(live_shim, src["id"], "migration_cancelled")
    final = osc_share(live_shim, src["id"])
    assert (final["status"], final["host"]) == ("available", src["host"])


PHASE1_DONE = ("migration_driver_phase1_done", "data_copying_completed")


def test_a_destination_the_scheduler_refuses_is_202_then_migration_error(
    live_shim: ShimServer,
) -> None:
    """tempest's test_migrate_share_change_type_no_valid_host: Manila's API accepts a new type
    whose share servers no pool provides, and its scheduler then fails the migration."""
    c = manila(live_shim)
    share = c.shares.get(new_share(live_shim, "no-valid-host"))
    dhss = c.share_types.create("needs-servers", True)
    net = c.share_networks.create(name="for-dhss")
    resp, _ = c.shares.migration_start(
        share,
        other_pool(share.host),
        False,
        False,
        False,
        False,
        False,
        new_share_network_id=net.id,
        new_share_type_id=dhss.id,
    )
    assert resp.status_code == 202
    failed = wait_task_state(lambda: c.shares.get(share.id), "migration_error")
    assert (failed.status, failed.host, failed.share_type) == (
        "available",
        share.host,
        share.share_type,
    )

"""migration_start's check order (§5.2), the state table (§9.4), races and progress (§8)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.kit.manila_api import action, assert_fault, progress_get, share_view, start_body
from tests.kit.shim_server import ShimServer

MakeShare = Callable[..., str]
SetState = Callable[..., str]


def new_type(admin: httpx.Client, **specs: object) -> str:
    body = {
        "share_type": {
            "name": f"t-{uuid.uuid4().hex[:8]}",
            "extra_specs": {"driver_handles_share_servers": False, **specs},
        }
    }
    resp = admin.post("/v2/demo/types", json=body)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["share_type"]["id"])


def new_network(admin: httpx.Client) -> str:
    resp = admin.post("/v2/demo/share-networks", json={"share_network": {"name": "n"}})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["share_network"]["id"])


# --- §5.2 in order ----------------------------------------------------------------------------


def test_unknown_share_is_404(shim: ShimServer) -> None:
    assert_fault(action(shim, "no-such-share", start_body()), 404, says="no-such-share")


def test_unknown_network_and_type_are_400_and_come_before_the_flag_combination(
    shim: ShimServer, make_share: MakeShare
) -> None:
    share = make_share()
    forced = {"force_host_assisted_migration": True, "writable": True}
    assert_fault(
        action(shim, share, start_body(new_share_network_id="nope", **forced)),
        400,
        says="Share network nope not found",
    )
    assert_fault(
        action(shim, share, start_body(new_share_type_id="nope", **forced)),
        400,
        says="Share type nope not found",
    )
    for flag in ("preserve_metadata", "preserve_snapshots", "writable", "nondisruptive"):
        resp = action(
            shim, share, start_body(force_host_assisted_migration="True", **{flag: "True"})
        )
        assert_fault(resp, 400, says="Invalid parameter combination")


def test_share_must_be_available_and_not_busy(
    shim: ShimServer, make_share: MakeShare, set_state: SetState
) -> None:
    migrating, reset = make_share(), make_share()
    set_state(migrating, "data_copying_in_progress")
    assert_fault(action(shim, migrating, start_body()), 400, says="current status is: migrating")
    # An admin reset the status but not the task_state: the busy check (step 13) catches it.
    set_state(reset, "data_copying_in_progress", status="available")
    assert_fault(action(shim, reset, start_body()), 400, says="busy with an active task")


def test_forced_host_copy_with_snapshots_is_409(
    shim: ShimServer, admin: httpx.Client, make_share: MakeShare
) -> None:
    share = make_share()
    assert (
        admin.post("/v2/demo/snapshots", json={"snapshot": {"share_id": share}}).status_code == 202
    )
    assert_fault(
        action(shim, share, start_body(force_host_assisted_migration=True)), 409, says="snapshots"
    )
    # Without force, snapshots do not block the API checks (the next failing step answers).
    assert_fault(action(shim, share, start_body(host="nohost@nobackend#p")), 404)


@pytest.mark.parametrize(
    "host", ["", "not a host", "nohost@nobackend#p", "nohost@nobackend", "retired@old#p", "@#"]
)
def test_unknown_or_disabled_service_is_404(
    shim: ShimServer, make_share: MakeShare, host: str
) -> None:
    service = host.split("#")[0]
    assert_fault(
        action(shim, make_share(), start_body(host=host)),
        404,
        says=f"ServiceNotFound: Service {service} could not be found",
    )


@pytest.mark.parametrize(
    ("host", "says"),
    [("sharemig@localfs#nosuchpool", "does not exist"), ("sharemig@localfs", "names no pool")],
)
def test_unknown_pool_on_a_known_backend_is_400(
    shim: ShimServer, make_share: MakeShare, host: str, says: str
) -> None:
    # Decided now rather than failing after a 202 (contract §5.2 allows either; §14.7).
    message = assert_fault(action(shim, make_share(), start_body(host=host)), 400, says=says)
    assert "sharemig@localfs#pool-a" in message  # names the pools one can use


def test_share_type_rules(shim: ShimServer, admin: httpx.Client, make_share: MakeShare) -> None:
    share = make_share(size=2)
    assert_fault(
        action(
            shim,
            share,
            start_body(new_share_type_id=new_type(admin, **{"provisioning:min_share_size": 5})),
        ),
        400,
        says="min_share_size 5",
    )
    assert_fault(
        action(
            shim,
            share,
            start_body(new_share_type_id=new_type(admin, **{"provisioning:max_share_size": 1})),
        ),
        400,
        says="max_share_size 1",
    )
    dhss = new_type(admin, driver_handles_share_servers=True)
    assert_fault(
        action(shim, share, start_body(new_share_type_id=dhss)), 400, says="needs a share network"
    )
    assert_fault(
        action(shim, share, start_body(new_share_network_id=new_network(admin))),
        400,
        says="New share network must not be provided",
    )
    zoned = new_type(admin, snapshot_support=True, availability_zones="elsewhere")
    assert_fault(
        action(shim, share, start_body(new_share_type_id=zoned)), 400, says="availability zones"
    )
    assert_fault(
        action(shim, share, start_body(host="sharemig@localfs#tiny")), 400, says="1 GiB free"
    )


def test_same_host_is_a_200_no_op(shim: ShimServer, make_share: MakeShare) -> None:
    share = make_share()
    host = str(share_view(shim, share)["host"])
    resp = action(shim, share, start_body(host=host), version="2.29", experimental=True)
    assert resp.status_code == 200 and resp.content == b""
    view = share_view(shim, share)
    assert (view["task_state"], view["status"], view["host"]) == (
        "migration_success",
        "available",
        host,
    )
    # A finished migration does not block a new start; the same host is still a no-op.
    assert action(shim, share, start_body(host=host)).status_code == 200


def test_valid_start_without_prefect_is_503_and_leaves_the_share_usable(
    shim: ShimServer, make_share: MakeShare
) -> None:
    share = make_share()
    host = str(share_view(shim, share)["host"])
    dest = "sharemig@localfs#pool-b" if host.endswith("pool-a") else "sharemig@localfs#pool-a"
    resp = action(shim, share, start_body(host=dest))
    assert resp.status_code == 503, resp.text
    assert "Prefect" in resp.json()["serviceUnavailable"]["message"]
    assert int(resp.headers["Retry-After"]) >= 1
    # Withdrawn, not failed: the share is exactly as it was before the request.
    view = share_view(shim, share)
    assert (view["status"], view["task_state"], view["host"]) == ("available", None, host)


# --- §9.4: what each task_state allows --------------------------------------------------------

PHASE1_DONE = {"migration_driver_phase1_done", "data_copying_completed"}
STATES = [
    None,
    "migration_starting",
    "migration_in_progress",
    "migration_driver_starting",
    "migration_driver_in_progress",
    "migration_driver_phase1_done",
    "data_copying_starting",
    "data_copying_in_progress",
    "data_copying_completing",
    "data_copying_completed",
    "migration_completing",
    "migration_success",
    "migration_error",
    "migration_cancelled",
]
# Cancel is accepted in every phase-1 state, not only the reference's four (contract §14.1).
NOT_CANCELLABLE = {
    None,
    "migration_completing",
    "migration_success",
    "migration_error",
    "migration_cancelled",
}
PROGRESS = {
    "migration_starting": 0,
    "migration_in_progress": 0,
    "migration_driver_starting": 0,
    "data_copying_starting": 0,
    "migration_driver_in_progress": 0,
    "data_copying_in_progress": 0,
    "migration_driver_phase1_done": 100,
    "data_copying_completing": 100,
    "data_copying_completed": 100,
    "migration_completing": 100,
    "migration_success": 100,
    # Where the reference says 100 (it reads as success, §14.3): how far it got.
    "migration_error": 0,
    "migration_cancelled": 0,
}


@pytest.mark.parametrize("state", STATES)
def test_state_table(
    shim: ShimServer, make_share: MakeShare, set_state: SetState, state: str | None
) -> None:
    share = make_share()
    if state is not None:
        set_state(share, state)
    status = share_view(shim, share)["status"]
    expected_start = 400 if status == "migrating" else None
    if expected_start:
        assert_fault(action(shim, share, start_body()), 400)
    prog = progress_get(shim, share)
    if state is None:
        assert_fault(prog, 400, says="no migration being performed")
    else:
        assert prog.status_code == 200
        assert prog.json()["total_progress"] == PROGRESS[state]
        assert prog.json()["task_state"] == state
    complete = action(shim, share, {"migration_complete": None})
    if state in PHASE1_DONE:
        assert complete.status_code == 202 and complete.content == b""
        assert share_view(shim, share)["task_state"] == "migration_completing"
        return
    assert_fault(complete, 400)
    cancel = action(shim, share, {"migration_cancel": None})
    if state in NOT_CANCELLABLE:
        assert_fault(cancel, 400)
    else:
        assert cancel.status_code == 202
        view = share_view(shim, share)  # no run exists yet, so the cancel finishes at once
        assert (view["task_state"], view["status"]) == ("migration_cancelled", "available")


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ("migration_success", "has already completed"),
        ("migration_cancelled", "was already cancelled"),
        ("migration_error", "no migration being performed"),
        ("data_copying_in_progress", "not completed yet"),
    ],
)
def test_refusals_say_why(
    shim: ShimServer, make_share: MakeShare, set_state: SetState, state: str, says: str
) -> None:
    share = make_share()
    set_state(share, state)
    assert_fault(action(shim, share, {"migration_complete": None}), 400, says=says)


def test_concurrent_completes_resolve_in_the_database(
    shim: ShimServer, make_share: MakeShare, set_state: SetState
) -> None:
    share = make_share()
    set_state(share, "data_copying_completed")
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(
            pool.map(
                lambda _: action(shim, share, {"migration_complete": None}).status_code, range(8)
            )
        )
    assert codes == [202] + [400] * 7


def test_cancel_after_complete_and_complete_after_cancel_are_400(
    shim: ShimServer, make_share: MakeShare, set_state: SetState
) -> None:
    share = make_share()
    set_state(share, "migration_driver_phase1_done")
    assert action(shim, share, {"migration_complete": None}).status_code == 202
    assert_fault(action(shim, share, {"migration_cancel": None}), 400, says="cannot be cancelled")
    other = make_share()
    set_state(other, "data_copying_completed", requested_action="cancel")
    assert_fault(action(shim, other, {"migration_complete": None}), 400, says="'cancel' request")

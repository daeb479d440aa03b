"""migration_start, complete, cancel and progress as the contract's codes and faults (§5.2,
§9.4, §8): one case per kind of answer. Every rule and state they stand for is checked on the
database in tests/storage/test_migration_admission.py."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.kit.manila_api import action, assert_fault, progress_get, share_view, start_body
from tests.kit.shim_server import ShimServer

MakeShare = Callable[..., str]
SetState = Callable[..., str]


# --- §5.2 in order ----------------------------------------------------------------------------


def test_unknown_share_is_404(shim: ShimServer) -> None:
    assert_fault(action(shim, "no-such-share", start_body()), 404, says="no-such-share")


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


@pytest.mark.parametrize("host", ["nohost@nobackend#p", "retired@old#p"])
def test_unknown_or_disabled_service_is_404(
    shim: ShimServer, make_share: MakeShare, host: str
) -> None:
    service = host.split("#")[0]
    assert_fault(
        action(shim, make_share(), start_body(host=host)),
        404,
        says=f"ServiceNotFound: Service {service} could not be found",
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
# One state per kind of answer (the whole table is tests/storage's test_state_table).
STATES = [
    None,
    "data_copying_in_progress",
    "data_copying_completed",
    "migration_completing",
    "migration_success",
]
NOT_CANCELLABLE = {None, "migration_completing", "migration_success"}
PROGRESS = {
    "data_copying_in_progress": 0,
    "data_copying_completed": 100,
    "migration_completing": 100,
    "migration_success": 100,
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

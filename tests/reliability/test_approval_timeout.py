"""`Settings.approval_timeout_action` on a real server and worker: what happens when nobody
approves in time. `keep_waiting`: the run stays suspended with its Resume form (no expiry for
Prefect to fail it on) and an approval after the timeout still switches over. `cancel`: a
deadline run rejects the migration, source intact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.kill_scenarios import (
    approve_and_finish,
    check_end,
    current_run,
    make_share,
    row,
    run_state,
    start,
    wait_paused,
    wait_state,
)
from tests.kit.kill_stack import POOL_A, Stack
from tests.kit.reliability import bytes_lost, content, record

pytestmark = pytest.mark.slow

TIMEOUT_S = 3


def run_state_names(run_id: str) -> list[str]:
    from uuid import UUID

    from prefect import get_client

    with get_client(sync_client=True) as client:
        return [st.name for st in client.read_flow_run_states(UUID(run_id))]


@pytest.fixture
def timeout_action(stack: Stack, request: pytest.FixtureRequest) -> Iterator[str]:
    """The stack's worker restarted with a short approval timeout and the given action."""
    stack.stop_worker()
    stack.start_worker(
        SHAREMIG_APPROVAL_TIMEOUT_S=str(TIMEOUT_S),
        SHAREMIG_APPROVAL_TIMEOUT_ACTION=request.param,
    )
    try:
        yield str(request.param)
    finally:
        stack.stop_worker()
        stack.start_worker()


@pytest.mark.parametrize("timeout_action", ["keep_waiting"], indirect=True)
def test_keep_waiting_keeps_the_resume_form_past_the_timeout(
    stack: Stack, tmp_path: Path, timeout_action: str
) -> None:
    share_id, src, reference = make_share(stack, tmp_path, files=40)
    expected = content(src)
    start(share_id)
    wait_paused(share_id)
    run_id = current_run(share_id)
    assert run_state(run_id).state_details.pause_timeout is None
    # Watch the run for the timeout plus a few rounds of Prefect's pause-expiry service.
    window_end = time.monotonic() + TIMEOUT_S + 4
    while time.monotonic() < window_end:
        assert run_state(run_id).is_paused(), "the suspended run expired"
        assert row(share_id)["task_state"] == "data_copying_completed"
        time.sleep(0.5)
    end = approve_and_finish(share_id)
    assert current_run(share_id) == run_id  # the same run resumed: the form still worked
    check_end("approval timeout: keep_waiting", share_id, end, reference, expected)


@pytest.mark.parametrize("timeout_action", ["cancel"], indirect=True)
def test_cancel_rejects_a_migration_nobody_approved(
    stack: Stack, tmp_path: Path, timeout_action: str
) -> None:
    share_id, src, _ = make_share(stack, tmp_path, files=40)
    expected = content(src)
    run_id = start(share_id)
    # The wait lasts TIMEOUT_S: a poll may miss it, so the run's state history shows it.
    end = wait_state(share_id, "migration_cancelled", "migration_error", timeout=90)
    assert "Suspended" in run_state_names(run_id), run_state_names(run_id)
    lost = bytes_lost(expected, src)
    record("approval timeout: cancel", str(end["task_state"]), lost)
    assert (end["status"], end["task_state"]) == ("available", "migration_cancelled")
    assert f"within {TIMEOUT_S} s" in (end["mig"].error or "")
    assert end["instances"] == [(POOL_A, "available")]
    assert lost == 0

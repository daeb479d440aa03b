"""An approval that reaches sharemig while Prefect hangs: accepted within the API's budget
(it is in the database before Prefect is asked), and carried out once Prefect answers again
(the recovery pass hands it to the run that waits for it), ending in `migration_success`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.kit.kill_scenarios import (
    FINISH,
    check_end,
    current_run,
    make_share,
    recover,
    run_state,
    start,
    wait_paused,
    wait_state,
)
from tests.kit.kill_stack import Stack
from tests.kit.reliability import content

pytestmark = pytest.mark.slow

BUDGET_S = 10.0  # SHAREMIG_PREFECT_TIMEOUT_S's default: the kill stack's shim sets none
SLACK_S = 2.0


def test_an_approval_while_prefect_hangs_is_accepted_and_recovery_delivers_it(
    stack: Stack, tmp_path: Path
) -> None:
    share_id, src, reference = make_share(stack, tmp_path, files=40)
    expected = content(src)
    start(share_id)
    wait_paused(share_id)
    stack.pause_server(True)  # SIGSTOP: the server accepts connections and never answers
    try:
        with stack.client() as api:
            began = time.monotonic()
            resp = api.post(f"/shares/{share_id}/action", json={"migration_complete": None})
            took = time.monotonic() - began
    finally:
        stack.pause_server(False)
    print(f"migration_complete against a hung Prefect: {resp.status_code} in {took:.2f} s")
    assert resp.status_code == 202, resp.text
    assert took <= BUDGET_S + SLACK_S
    state = run_state(current_run(share_id))
    assert state is not None and state.is_paused()  # the decision has not reached the run
    assert recover(share_id) == "deliver"
    end = wait_state(share_id, "migration_success", "migration_error", timeout=FINISH)
    check_end("approval while Prefect hangs", share_id, end, reference, expected)

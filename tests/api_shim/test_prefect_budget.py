"""Bounded latency at the API: a request that needs Prefect waits at most
SHAREMIG_PREFECT_TIMEOUT_S, then gets a 503 with Retry-After, and a start that could not
create its run leaves the share exactly as it was (no reservation, no task_state).

A real shim talks to the session's real Prefect server through `prefect_proxy`, which can
make that server hang or answer "database is locked" 503s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import pytest

from tests.kit.manila_api import action, share_view, start_body
from tests.kit.prefect_proxy import PrefectProxy, prefect_proxy
from tests.kit.shim_server import ShimServer, run_shim, write_inventory

BUDGET_S = 3.0
# Answer time over the budget the test allows: one HTTP exchange and the withdrawal's
# transaction on a loaded 2-CPU machine.
SLACK_S = 1.5
POOL_A = "sharemig@localfs#pool-a"


@pytest.fixture(scope="module")
def proxy(deployed: dict[str, Any]) -> Iterator[PrefectProxy]:
    port = urlsplit(os.environ["PREFECT_API_URL"]).port
    assert port is not None
    with prefect_proxy(port) as running:
        yield running


@pytest.fixture(scope="module")
def budget_shim(
    proxy: PrefectProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ShimServer]:
    home = tmp_path_factory.mktemp("budget") / "home"
    home.mkdir(parents=True)
    write_inventory(home)
    env = dict(os.environ)
    env["PREFECT_API_URL"] = proxy.api_url
    env["SHAREMIG_PREFECT_TIMEOUT_S"] = str(BUDGET_S)
    with run_shim(home, env) as server:
        yield server
    _cancel_created_runs(server)


def _cancel_created_runs(shim: ShimServer) -> None:
    """The session's server has no worker for these runs: leave none of them scheduled."""
    from prefect import get_client
    from prefect.states import Cancelled
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import Migration

    with session_scope(shim.db_url) as s:
        runs = [r for r in s.scalars(select(Migration.flow_run_id)) if r]
    with get_client(sync_client=True) as client:
        for run in runs:
            client.set_flow_run_state(UUID(run), Cancelled(message="test over"), force=True)


def _share(shim: ShimServer) -> tuple[str, str]:
    """A new share and the localfs pool it is not on (its migration destination)."""
    with shim.client("admin") as c:
        resp = c.post("/v2/demo/shares", json={"share": {"share_proto": "NFS", "size": 1}})
    assert resp.status_code == 200, resp.text
    share = resp.json()["share"]
    dest = "sharemig@localfs#pool-b" if share["host"].endswith("pool-a") else POOL_A
    return str(share["id"]), dest


def _free_gb(shim: ShimServer, pool: str) -> float:
    with shim.client("admin") as c:
        pools = c.get("/v2/demo/scheduler-stats/pools/detail").json()["pools"]
    return float(next(p for p in pools if p["name"] == pool)["capabilities"]["free_capacity_gb"])


def _timed_start(shim: ShimServer, share_id: str, dest: str) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    resp = action(shim, share_id, start_body(host=dest))
    return resp, time.monotonic() - began


def _migration_rows(shim: ShimServer, share_id: str) -> list[tuple[str | None, bool, str | None]]:
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import Migration

    with session_scope(shim.db_url) as s:
        rows = s.execute(
            select(Migration.outcome, Migration.active, Migration.flow_run_id).where(
                Migration.share_id == share_id
            )
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_a_start_through_a_healthy_prefect_is_202_with_its_run(
    budget_shim: ShimServer, proxy: PrefectProxy
) -> None:
    proxy.mode = "forward"
    share_id, dest = _share(budget_shim)
    resp, took = _timed_start(budget_shim, share_id, dest)
    assert resp.status_code == 202, resp.text
    assert took < BUDGET_S
    assert share_view(budget_shim, share_id)["task_state"] == "migration_starting"
    [(outcome, active, run_id)] = _migration_rows(budget_shim, share_id)
    assert (outcome, active) == (None, True) and run_id


def test_a_hung_prefect_gives_503_with_retry_after_within_the_budget_and_the_share_unchanged(
    budget_shim: ShimServer, proxy: PrefectProxy
) -> None:
    share_id, dest = _share(budget_shim)
    before = share_view(budget_shim, share_id)
    free_before = _free_gb(budget_shim, dest)
    proxy.mode = "hang"
    try:
        resp, took = _timed_start(budget_shim, share_id, dest)
    finally:
        proxy.mode = "forward"
    print(f"hung Prefect: {resp.status_code} after {took:.2f} s (budget {BUDGET_S} s)")
    assert resp.status_code == 503, resp.text
    assert BUDGET_S - 0.5 <= took <= BUDGET_S + SLACK_S
    assert int(resp.headers["Retry-After"]) >= 1
    message = resp.json()["serviceUnavailable"]["message"]
    assert "Prefect" in message and f"within {BUDGET_S:g} s" in message, message
    after = share_view(budget_shim, share_id)
    keys = ("status", "task_state", "host", "export_locations")
    assert {k: after.get(k) for k in keys} == {k: before.get(k) for k in keys}
    assert _free_gb(budget_shim, dest) == free_before  # the reservation was released
    assert _migration_rows(budget_shim, share_id) == [("withdrawn", False, None)]

    # The client's retry, once Prefect answers again, starts the migration as usual.
    again, took = _timed_start(budget_shim, share_id, dest)
    assert again.status_code == 202, again.text
    assert share_view(budget_shim, share_id)["task_state"] == "migration_starting"


def test_database_is_locked_answers_are_retried_within_the_budget(
    budget_shim: ShimServer, proxy: PrefectProxy
) -> None:
    share_id, dest = _share(budget_shim)
    proxy.mode = "forward"
    answered = proxy.busy_answered
    proxy.busy(3)  # Prefect's 503 for SQLite's "database is locked", three times over
    resp, took = _timed_start(budget_shim, share_id, dest)
    assert resp.status_code == 202, resp.text
    assert proxy.busy_answered - answered == 3
    assert took < BUDGET_S
    [(outcome, active, run_id)] = _migration_rows(budget_shim, share_id)
    assert (outcome, active) == (None, True) and run_id


def test_a_prefect_that_stays_locked_gives_503_within_the_budget(
    budget_shim: ShimServer, proxy: PrefectProxy
) -> None:
    share_id, dest = _share(budget_shim)
    proxy.mode = "forward"
    proxy.busy(10_000)
    try:
        resp, took = _timed_start(budget_shim, share_id, dest)
    finally:
        proxy.busy(0)
    assert resp.status_code == 503, resp.text
    assert took <= BUDGET_S + SLACK_S
    assert "Retry-After" in resp.headers
    assert share_view(budget_shim, share_id)["task_state"] is None
    assert _migration_rows(budget_shim, share_id) == [("withdrawn", False, None)]


def test_a_cancel_while_prefect_hangs_is_accepted_within_the_budget_and_recorded(
    budget_shim: ShimServer, proxy: PrefectProxy
) -> None:
    share_id, dest = _share(budget_shim)
    proxy.mode = "forward"
    started, _ = _timed_start(budget_shim, share_id, dest)
    assert started.status_code == 202, started.text
    proxy.mode = "hang"
    try:
        began = time.monotonic()
        resp = action(budget_shim, share_id, {"migration_cancel": None})
        took = time.monotonic() - began
    finally:
        proxy.mode = "forward"
    # The cancel is in the database before Prefect is asked: the run stops on it when it
    # starts, and the recovery pass cancels a migration whose run is gone.
    assert resp.status_code == 202, resp.text
    assert took <= BUDGET_S + SLACK_S
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import Migration

    with session_scope(budget_shim.db_url) as s:
        requested = s.scalar(
            select(Migration.requested_action).where(
                Migration.share_id == share_id, Migration.active.is_(True)
            )
        )
    assert requested == "cancel"

"""Fixtures for API shim tests: a real shim process with its own data dir, and DB helpers."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.kit.shim_server import ShimServer, run_shim, write_inventory


@pytest.fixture(scope="session")
def shim(session_dir: Path) -> Iterator[ShimServer]:
    """A shim without a Prefect server behind it: everything up to creating a flow run."""
    home = session_dir / "shim-home"
    home.mkdir(parents=True, exist_ok=True)
    write_inventory(home)
    env = dict(os.environ)
    # A port held bound but never listening: connections to it are refused, and no other
    # server (of this session or another engineer's) can take it, as it could a port that
    # was only free when asked. A start that passes every check meets an unreachable Prefect.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{held.getsockname()[1]}/api"
        with run_shim(home, env) as server:
            yield server


@pytest.fixture
def admin(shim: ShimServer) -> Iterator[httpx.Client]:
    with shim.client("admin") as client:
        yield client


@pytest.fixture
def make_share(admin: httpx.Client) -> Callable[..., str]:
    """Create a share through the API (default: 1 GiB on the emptiest pool); returns its id."""

    def make(size: int = 1, **extra: object) -> str:
        resp = admin.post(
            "/v2/demo/shares", json={"share": {"share_proto": "NFS", "size": size, **extra}}
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["share"]["id"])

    return make


@pytest.fixture
def set_state(shim: ShimServer) -> Callable[..., str]:
    """Put a share where a migration would have taken it; returns the migration id.

    Only the rows a client can observe are written (share status/task_state, an active
    migration row with its counters); no flow run exists, which is what a run looks like
    before Prefect has picked it up.
    """
    from tests.kit.shares import put_in_state

    def put(
        share_id: str,
        task_state: str | None,
        *,
        status: str | None = None,
        requested_action: str | None = None,
        **counters: object,
    ) -> str:
        return put_in_state(
            shim.db_url,
            share_id,
            task_state,
            status=status,
            requested_action=requested_action,
            **counters,
        )

    return put

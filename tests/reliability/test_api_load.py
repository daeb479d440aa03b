"""Load at the API against `sharemig up` on SQLite: concurrent `migration_start`s while
progress is polled at ~20 requests/s. No request may outlast the Prefect budget (plus a
little for the answer itself), every 5xx must be a 503 fault with Retry-After, and every
migration ends in `migration_success` (or its start was refused cleanly and left alone).

Opt-in (slow); size with SHAREMIG_LOAD_MIGRATIONS (default 20).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kit.manila_api import start_body
from tests.kit.up_process import UpProcess, run_up

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

MIGRATIONS = int(os.environ.get("SHAREMIG_LOAD_MIGRATIONS", "20"))
POLL_PER_S = 20.0
BUDGET_S = 10.0
SLACK_S = 2.0  # the answer itself on a loaded 2-CPU machine
START_TRIES = 5


@dataclass
class Call:
    what: str
    status: int  # 0: no answer within the client's timeout
    seconds: float
    retry_after: str | None


class Recorder:
    def __init__(self, up: UpProcess) -> None:
        ep = up.endpoints
        self.client = httpx.Client(
            base_url=f"{ep['api_url']}/v2/{ep['project_id']}",
            headers={"X-Auth-Token": ep["admin_token"], "X-OpenStack-Manila-API-Version": "2.99"},
            timeout=3 * BUDGET_S,
            limits=httpx.Limits(max_connections=64),
        )
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def call(self, what: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        began = time.monotonic()
        try:
            resp: httpx.Response | None = self.client.request(method, path, **kw)
        except httpx.TimeoutException:
            resp = None
        took = time.monotonic() - began
        with self._lock:
            self.calls.append(
                Call(
                    what,
                    resp.status_code if resp is not None else 0,
                    took,
                    resp.headers.get("Retry-After") if resp is not None else None,
                )
            )
        return resp


def _until(
    check: Callable[[], bool], timeout: float, what: str, seen: dict[str, Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {seen}"
        time.sleep(0.5)


def test_concurrent_starts_while_polling_stay_within_the_budget(tmp_path: Path) -> None:
    env = {"SHAREMIG_PREFECT_TIMEOUT_S": str(BUDGET_S)}
    with run_up(tmp_path / "home", extra_env=env) as up:
        rec = Recorder(up)
        shares: list[tuple[str, str]] = []
        pools = [p["name"] for p in rec.client.get("/scheduler-stats/pools").json()["pools"]]
        for i in range(MIGRATIONS):
            body = {"share": {"share_proto": "NFS", "size": 1, "name": f"load-{i}"}}
            share = rec.client.post("/shares", json=body).json()["share"]
            export = rec.client.get(f"/shares/{share['id']}/export_locations").json()
            root = Path(export["export_locations"][0]["path"].split(":", 1)[1])
            for j in range(5):
                (root / f"f{j}.bin").write_bytes(os.urandom(32 * 1024))
            dest = next(p for p in pools if p != share["host"] and "localfs" in p)
            shares.append((share["id"], dest))

        stop = threading.Event()

        def poll() -> None:
            i = 0
            next_at = time.monotonic()
            while not stop.is_set():
                share_id = shares[i % len(shares)][0]
                rec.call("progress", "GET", f"/shares/{share_id}/migration-progress")
                i += 1
                next_at += 1 / POLL_PER_S
                stop.wait(max(0.0, next_at - time.monotonic()))

        refused: list[str] = []

        def start(share_id: str, dest: str, go: threading.Barrier) -> None:
            body = start_body(host=dest, force_host_assisted_migration=True)
            go.wait()
            for _ in range(START_TRIES):
                resp = rec.call("start", "POST", f"/shares/{share_id}/action", json=body)
                if resp is not None and resp.status_code == 202:
                    return
                if resp is not None and resp.status_code == 503:
                    # What a client does with a 503: wait as told, then send it again.
                    time.sleep(float(resp.headers.get("Retry-After", "5")))
                    continue
                break
            refused.append(share_id)

        pollers = [threading.Thread(target=poll, daemon=True)]
        for t in pollers:
            t.start()
        began = time.monotonic()
        go = threading.Barrier(len(shares))
        starters = [
            threading.Thread(target=start, args=(sid, dest, go), daemon=True)
            for sid, dest in shares
        ]
        for t in starters:
            t.start()
        for t in starters:
            t.join(timeout=START_TRIES * (3 * BUDGET_S + 10))
        started = [sid for sid, _ in shares if sid not in refused]

        def task_state(share_id: str) -> str | None:
            resp = rec.call("show", "GET", f"/shares/{share_id}")
            return None if resp is None else resp.json()["share"]["task_state"]

        failed: set[str] = set()
        last: dict[str, Any] = {}

        def all_in(states: set[str], ids: list[str]) -> bool:
            now = {sid: task_state(sid) for sid in ids}
            last.clear()
            last.update({sid: s for sid, s in now.items() if s not in states})
            failed.update(sid for sid, s in now.items() if s == "migration_error")
            return all(s in states or sid in failed for sid, s in now.items())

        _until(lambda: all_in({"data_copying_completed"}, started), 900, "phase 1", last)
        for share_id in [sid for sid in started if sid not in failed]:
            body = {"migration_complete": None}
            resp = rec.call("complete", "POST", f"/shares/{share_id}/action", json=body)
            assert resp is not None and resp.status_code == 202, resp and resp.text
        _until(lambda: all_in({"migration_success"}, started), 600, "switchovers", last)
        errors = {sid: _error(up, sid) for sid in failed}
        took = time.monotonic() - began
        stop.set()
        for t in pollers:
            t.join(timeout=10)
        for share_id in refused:  # a refused start left the share as it was
            assert task_state(share_id) is None
        locked = (up.home / "logs" / "prefect-server.log").read_text().count("database is locked")

    calls = rec.calls
    secs = sorted(c.seconds for c in calls)
    p99 = secs[int(0.99 * (len(secs) - 1))]
    starts = [c for c in calls if c.what == "start"]
    print(
        f"\n{MIGRATIONS} migrations in {took:.0f} s; {len(calls)} requests "
        f"(p50 {statistics.median(secs):.3f} s, p99 {p99:.3f} s, max {secs[-1]:.2f} s); "
        f"starts: {len(starts)} requests, {sum(c.status == 503 for c in starts)} x 503, "
        f"max {max(c.seconds for c in starts):.2f} s; refused for good: {len(refused)}; "
        f"migration_error: {len(errors)}; "
        f"'database is locked' in Prefect's log: {locked}; load {os.getloadavg()[0]:.1f}"
    )
    slow = [c for c in calls if c.seconds > BUDGET_S + SLACK_S or c.status == 0]
    assert not slow, slow[:10]
    bad = [c for c in calls if c.status >= 500 and (c.status != 503 or c.retry_after is None)]
    assert not bad, bad[:10]
    assert len(started) + len(refused) == MIGRATIONS
    assert not errors, errors


def _error(up: UpProcess, share_id: str) -> str | None:
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import Migration

    with session_scope(f"sqlite:///{up.home / 'sharemig.db'}") as s:
        return s.scalar(
            select(Migration.error)
            .where(Migration.share_id == share_id, Migration.outcome == "migration_error")
            .limit(1)
        )

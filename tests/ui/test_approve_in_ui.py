"""Approving a migration in the real Prefect UI: `sharemig up`, `sharemig demo`, then Debian's
Chromium (headless, driven by Playwright) opens the waiting run, fills the Resume form and
submits it; the migration ends in `migration_success` with the reason typed in the form.

SHAREMIG_SCREENSHOT_DIR=docs keeps the screenshot of the filled form for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kit.up_process import UpProcess, run_up

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REASON = "checked the copy report; go ahead"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    with run_up(tmp_path_factory.mktemp("ui") / "home") as running:
        yield running


def _share(up: UpProcess, share_id: str) -> dict[str, Any]:
    ep = up.endpoints
    resp = httpx.get(
        f"{ep['api_url']}/v2/{ep['project_id']}/shares/{share_id}",
        headers={"X-Auth-Token": ep["admin_token"], "X-OpenStack-Manila-API-Version": "2.99"},
        timeout=30,
    )
    return dict(resp.json()["share"])


def _run_state(up: UpProcess, run_id: str) -> str:
    resp = httpx.get(f"{up.endpoints['prefect_url']}/api/flow_runs/{run_id}", timeout=30)
    return str(resp.json()["state"]["type"])


def _approval_reason(up: UpProcess, share_id: str) -> str | None:
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import Migration

    with session_scope(f"sqlite:///{up.home / 'sharemig.db'}") as s:
        mig = s.scalars(select(Migration).where(Migration.share_id == share_id)).one()
        return mig.approval_reason


def test_approve_the_waiting_migration_in_the_prefect_ui(up: UpProcess, tmp_path: Path) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's `chromium` (.ci/system-packages)")
    from playwright.sync_api import Route, expect, sync_playwright

    demo = up.sharemig("demo", "--json", "--scale", "0.2")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    started = json.loads(demo.stdout)
    assert started["task_state"] == "data_copying_completed" and started["flow_run_url"]
    shots = Path(os.environ.get("SHAREMIG_SCREENSHOT_DIR") or tmp_path)

    def local_only(route: Route) -> None:
        # The V2 UI calls an analytics host; offline that only slows things down.
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "http://localhost")):
            route.continue_()
        else:
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.route("**/*", local_only)
            page = context.new_page()
            page.goto(started["flow_run_url"])
            badge = page.locator(".state-badge").first
            expect(badge).to_have_text("Suspended", timeout=60_000)
            page.get_by_role("button", name="Resume", exact=True).click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_contain_text("Resume Flow Run", timeout=30_000)
            approve = dialog.locator(".schema-form-property", has_text="Approve")
            expect(approve.get_by_role("switch")).to_have_attribute("aria-checked", "true")
            reason = dialog.locator(".schema-form-property", has_text="Reason")
            reason.get_by_role("textbox").fill(REASON)
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "approve-in-prefect-ui.png"))
            for _ in range(3):
                dialog.get_by_role("button", name="Submit").click()
                try:
                    # Not the "Flow run resumed" toast: it can come and go between two polls.
                    expect(dialog).to_be_hidden(timeout=20_000)
                    break
                except AssertionError:
                    # A Prefect server on SQLite under heavy load can answer the resume with
                    # "database is locked" (500); an operator would press Submit again.
                    if _run_state(up, started["flow_run_id"]) != "PAUSED":
                        break
                    reason.get_by_role("textbox").fill(REASON)
            assert _run_state(up, started["flow_run_id"]) != "PAUSED", "the resume never landed"
            # Suspended -> Resuming -> Pending -> Running -> Completed (a new process).
            expect(badge).to_have_text("Completed", timeout=180_000)
        finally:
            browser.close()

    deadline = time.monotonic() + 60
    while (share := _share(up, started["share_id"]))["task_state"] != "migration_success":
        assert share["task_state"] != "migration_error", share
        assert time.monotonic() < deadline, share
        time.sleep(0.3)
    assert share["host"] == started["destination"] and share["status"] == "available"
    assert _approval_reason(up, started["share_id"]) == REASON

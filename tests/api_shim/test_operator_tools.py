"""Operators' tools on a real stack (shim, Prefect server, worker): ETA and throughput in the
API, `sharemig status --watch` and the Prefect artifact during a paced copy; `sharemig report`
and its admin route; `/metrics` against the API.

The session worker copies at `prefect_service.BANDWIDTH` (8 MiB/s), so a 96 MiB share takes
seconds to copy: long enough to watch the figures move.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import xxhash

from tests.kit.bench_kit import gen_tree
from tests.kit.prefect_service import POOL_A, POOL_B
from tests.kit.shares import new_share
from tests.kit.shim_server import PROJECT, ShimServer, run_shim
from tests.kit.waiting import wait_for, wait_task_state

SHAREMIG = str(Path(sys.executable).with_name("sharemig"))
BEFORE_COPY = ("migration_starting", "migration_in_progress")
COPYING = ("data_copying_starting", "data_copying_in_progress", "data_copying_completing")


@pytest.fixture(scope="module")
def live_shim(worker: int, service_home: Path) -> Iterator[ShimServer]:
    with run_shim(service_home, dict(os.environ)) as server:
        yield server


def _env(shim: ShimServer) -> dict[str, str]:
    return {**os.environ, "SHAREMIG_HOME": str(shim.home)}


def _share(shim: ShimServer, name: str) -> tuple[str, Path]:
    share = new_share(POOL_A, project=PROJECT, name=name, db_url=shim.db_url)
    return share.share_id, share.path


def _action(client: httpx.Client, share_id: str, body: dict[str, Any]) -> None:
    """POST an action; a 503 (Prefect too slow on a loaded machine) did nothing, so the
    test retries it as its message tells a client to."""

    def accepted() -> bool:
        resp = client.post(f"/v2/{PROJECT}/shares/{share_id}/action", json=body)
        assert resp.status_code in (202, 503), resp.text
        return resp.status_code == 202

    wait_for(accepted, timeout=180, interval=2.0, what=f"{next(iter(body))} accepted")


def _start(client: httpx.Client, share_id: str) -> None:
    flags = dict(writable=False, preserve_metadata=False, nondisruptive=False)
    body = {"host": POOL_B, "preserve_snapshots": False, **flags}
    _action(client, share_id, {"migration_start": {**body, "force_host_assisted_migration": True}})


def _progress(client: httpx.Client, share_id: str) -> dict[str, Any]:
    resp = client.get(f"/v2/{PROJECT}/shares/{share_id}/migration-progress")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _share_json(client: httpx.Client, share_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v2/{PROJECT}/shares/{share_id}").json()["share"])


def _wait_state(client: httpx.Client, share_id: str, state: str, timeout: float = 180) -> None:
    wait_task_state(lambda: _share_json(client, share_id), state, timeout=timeout, interval=0.3)


def _artifact_descriptions(flow_run_id: str) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
    )

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]),
                type=ArtifactFilterType(any_=["progress"]),
            )
        )
    return [a.description or "" for a in found]


def _flow_run(shim: ShimServer, share_id: str) -> str:
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import Migration

    def run() -> str | None:
        with session_scope(shim.db_url) as s:
            return s.scalar(
                select(Migration.flow_run_id)
                .where(Migration.share_id == share_id)
                .order_by(Migration.created_at.desc())
            )

    return str(wait_for(run, timeout=30, what="the migration's flow run"))


def test_paced_copy_shows_rate_and_eta_everywhere_then_metrics_match(
    live_shim: ShimServer,
) -> None:
    share_id, root = _share(live_shim, "paced")
    for i in range(192):  # 96 MiB: ~12 s at the worker's 8 MiB/s
        (root / f"f{i:03d}.bin").write_bytes(os.urandom(512 * 1024))
    before = live_shim.metrics()
    with live_shim.client("admin") as admin:
        _start(admin, share_id)
        run_id = _flow_run(live_shim, share_id)
        watch = subprocess.Popen(
            [SHAREMIG, "status", share_id, "--watch"],
            env={
                **_env(live_shim),
                "TTY_COMPATIBLE": "1",
                "TTY_INTERACTIVE": "1",
                "COLUMNS": "200",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        samples: list[dict[str, Any]] = []
        artifacts: list[str] = []
        while (state := _share_json(admin, share_id)["task_state"]) in (*COPYING, *BEFORE_COPY):
            details = _progress(admin, share_id).get("details", {})
            if details.get("eta_seconds") is not None:
                samples.append(details)
                artifacts += _artifact_descriptions(run_id)
            time.sleep(0.3)
        assert state == "data_copying_completed", state
        out, err = watch.communicate(timeout=60)
        assert watch.returncode == 0, err

        assert len(samples) >= 3, samples
        for d in samples:
            assert d["bytes_per_second"] >= 0 and d["files_per_second"] >= 0
            assert d["eta_seconds"] >= 0
            # Paced at 8 MiB/s: the average can only be below it (plus one second of burst).
            assert d["bytes_per_second"] <= 2 * 8 * 2**20
        # The ETA is the time left at the rate shown (bytes left / bytes per second: equal
        # files, so the per-file weight scales both alike), counted down since the verified
        # counters last moved, to the ETA's rounding second.
        for d in samples:
            left = d["bytes_total"] - d["bytes_verified"]
            assert d["eta_seconds"] * d["bytes_per_second"] <= left + d["bytes_per_second"], d
        # Verified bytes move in steps (files are synced and read back a group at a time);
        # between two steps the ETA counts down with the clock, and across the copy it falls.
        for a, b in pairwise(samples):
            if (a["bytes_verified"], a["bytes_total"]) == (b["bytes_verified"], b["bytes_total"]):
                assert b["eta_seconds"] <= a["eta_seconds"], (a, b)
        thirds = max(1, len(samples) // 3)
        first = max(d["eta_seconds"] for d in samples[:thirds])
        last = min(d["eta_seconds"] for d in samples[-thirds:])
        assert last < first, [(d["eta_seconds"], d["bytes_verified"]) for d in samples]
        assert any("MiB/s" in line and "left" in line for line in out.splitlines()), out[-2000:]
        assert any("bytes/s" in a and "files/s" in a and "ETA" in a for a in artifacts), artifacts

        _action(admin, share_id, {"migration_complete": None})
        _wait_state(admin, share_id, "migration_success")
        report = admin.get(f"/v2/{PROJECT}/sharemig/shares/{share_id}/report")
        assert report.status_code == 200, report.text
        summary = report.json()["summary"]

    after = live_shim.metrics()

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert summary["files"] == 192 and summary["bytes"] == 192 * 512 * 1024
    assert delta("sharemig_verified_bytes_total{}") == summary["bytes"]
    assert delta("sharemig_verified_files_total{}") == summary["files"]
    assert delta("sharemig_migrations{task_state=migration_success}") == 1
    assert after["sharemig_switchover_duration_seconds_count{}"] >= 1
    action = "method=POST,route=/v2/shares/{share_id}/action,status=202"
    assert delta(f"sharemig_api_request_duration_seconds_count{{{action}}}") >= 2


def _independent_listing(root: Path) -> dict[bytes, str | None]:
    """Every entry under `root` (relative bytes path) with the xxh3-128 of regular files."""
    listing: dict[bytes, str | None] = {b"": None}
    top = os.fsencode(root)
    for here, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(here, name)
            rel = os.path.relpath(path, top)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                h = xxhash.xxh3_128()
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                digest = h.hexdigest()
            listing[rel] = digest
    return listing


def test_report_lists_every_entry_of_the_small_tree_with_its_hashes(
    live_shim: ShimServer, tmp_path: Path
) -> None:
    share_id, root = _share(live_shim, "awkward")
    gen_tree(root)
    expected = _independent_listing(root)
    with live_shim.client("admin") as admin:
        _start(admin, share_id)
        _wait_state(admin, share_id, "data_copying_completed")
        out = tmp_path / "report.json"
        cli = subprocess.run(
            [SHAREMIG, "report", share_id, "--output", str(out)],
            env=_env(live_shim),
            capture_output=True,
            text=True,
        )
        assert cli.returncode == 0, cli.stderr
        report = json.loads(out.read_text())
        via_api = admin.get(f"/v2/{PROJECT}/sharemig/shares/{share_id}/report").json()
        assert via_api["entries"] == report["entries"]
        csv_out = subprocess.run(
            [SHAREMIG, "report", share_id, "--format", "csv"],
            env=_env(live_shim),
            capture_output=True,
            text=True,
        )
        assert csv_out.returncode == 0 and "path,path_hex,kind" in csv_out.stdout
        _action(admin, share_id, {"migration_cancel": None})
        _wait_state(admin, share_id, "migration_cancelled")

    entries = {bytes.fromhex(e["path_hex"]): e for e in report["entries"]}
    assert set(entries) == set(expected)
    for path, digest in expected.items():
        entry = entries[path]
        if entry["kind"] == "file":
            assert entry["src_xxh3_128"] == entry["dst_xxh3_128"] == digest, path
            assert entry["state"] == "done"
    summary = report["summary"]
    assert summary["entries"] == len(expected) and summary["unverified"] == 0
    assert summary["files"] == sum(1 for e in entries.values() if e["kind"] == "file")
    assert summary["skipped_special"] >= 1  # the kit's FIFO
    assert summary["links"] >= 14  # its symlinks, plus hard-linked names


def test_report_cli_refuses_an_unknown_share(live_shim: ShimServer) -> None:
    # The route's own refusals (404s, the admin role) are tests/api_shim/test_metrics_and_pace.py's.
    cli = subprocess.run(
        [SHAREMIG, "report", "no-such-share"], env=_env(live_shim), capture_output=True, text=True
    )
    assert cli.returncode == 2 and "could not be found" in cli.stderr

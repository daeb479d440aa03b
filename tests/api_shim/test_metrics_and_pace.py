"""`/metrics`, the rate/ETA in `details` and the report route, on a real shim without Prefect.

Migrations are put into their states through the database (`set_state`), as a long copy
would leave them; the worker-side figures then come from the same rows the shim reads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from tests.kit.manila_api import progress_get
from tests.kit.shim_server import PROJECT, ShimServer

MakeShare = Callable[..., str]
SetState = Callable[..., str]


def _copy_started(shim: ShimServer, migration_id: str, seconds_ago: float) -> None:
    """A copy job begun `seconds_ago`, as the flow's plan step creates it."""
    from storage.db import session_scope
    from storage.models import CopyJob, Migration
    from storage.models.base import utcnow

    with session_scope(shim.db_url) as s:
        job = CopyJob(source_url="/s", dest_url="/d", state="copying")
        job.created_at = utcnow() - timedelta(seconds=seconds_ago)
        s.add(job)
        s.flush()
        mig = s.get(Migration, migration_id)
        assert mig is not None
        mig.copy_job_id = job.id


def test_details_carry_rate_and_eta_from_the_same_counters(
    shim: ShimServer, make_share: MakeShare, set_state: SetState
) -> None:
    share = make_share()
    mig = set_state(
        share,
        "data_copying_in_progress",
        files_planned=100,
        bytes_planned=100 << 20,
        files_verified=25,
        bytes_verified=25 << 20,
    )
    body = progress_get(shim, share).json()
    assert body["details"]["eta_seconds"] is None  # no plan has begun: nothing to time
    _copy_started(shim, mig, 100.0)
    details = progress_get(shim, share).json()["details"]
    # 25 MiB in a little over 100 s (the request's own time added), 75 % left at that pace:
    # three times as long as it took so far.
    assert 0.2 * 2**20 < details["bytes_per_second"] <= 0.25 * 2**20
    assert details["files_per_second"] in (0.2, 0.3)  # 0.25/s, rounded to one decimal
    elapsed = (25 << 20) / details["bytes_per_second"]
    assert abs(details["eta_seconds"] - 3 * elapsed) <= 2
    later = progress_get(shim, share).json()["details"]
    assert later["eta_seconds"] >= 0 and later["bytes_per_second"] >= 0


def test_metrics_parse_and_count_what_the_api_reports(
    shim: ShimServer, make_share: MakeShare, set_state: SetState
) -> None:
    before = shim.metrics()
    share = make_share()
    mig = set_state(
        share,
        "data_copying_in_progress",
        files_planned=10,
        bytes_planned=5000,
        files_verified=4,
        bytes_verified=3000,
    )
    _copy_started(shim, mig, 10.0)
    details = progress_get(shim, share).json()["details"]
    after = shim.metrics()

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta("sharemig_verified_bytes_total{}") == details["bytes_verified"] == 3000
    assert delta("sharemig_verified_files_total{}") == details["files_verified"] == 4
    assert delta("sharemig_migrations{task_state=data_copying_in_progress}") == 1
    rate = after[
        f"sharemig_copy_throughput_bytes_per_second{{migration_id={mig},share_id={share}}}"
    ]
    assert 0 < rate <= 300  # 3000 B in a little over 10 s
    progress = "method=GET,route=/v2/shares/{share_id}/migration-progress,status=200"
    assert delta(f"sharemig_api_request_duration_seconds_count{{{progress}}}") >= 1
    assert after["sharemig_switchover_duration_seconds_count{}"] >= 0


def test_report_route_refusals(shim: ShimServer, make_share: MakeShare) -> None:
    share = make_share()
    with shim.client("admin") as admin:
        unknown = admin.get(f"/v2/{PROJECT}/sharemig/shares/no-such-share/report")
        assert unknown.status_code == 404 and "could not be found" in unknown.text
        never = admin.get(f"/v2/sharemig/shares/{share}/report")  # the URL without a project
        assert never.status_code == 404 and "no migration with a manifest" in never.text
    with shim.client("member") as member:
        denied = member.get(f"/v2/{PROJECT}/sharemig/shares/{share}/report")
        assert denied.status_code == 403 and "admin role" in denied.text

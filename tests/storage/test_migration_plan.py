"""`plan_migration`: what a start would do, with the API's refusals, and nothing changed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.db import session_scope
from storage.errors import InvalidInputError, NotFoundError, SharemigError
from storage.migration_admission import StartRequest, admit_start
from storage.migration_plan import plan_migration
from storage.models import Base, MoverRate
from storage.mover_rates import DEFAULT_WORK_PER_S, this_host
from storage.pools import driver_for
from storage.progress import ENTRY_WEIGHT_BYTES
from storage.shares import active_instance, create_share


def _request(host: str, **flags: bool) -> StartRequest:
    base = dict(preserve_metadata=False, preserve_snapshots=False, writable=False)
    return StartRequest(host=host, nondisruptive=False, **{**base, **flags})


def _share_with_files(session: Session, files: int, size: int) -> tuple[str, Path]:
    share = create_share(session, project_id="p1", size=1, host="h1@lfs#a", name="plan")
    root = Path(
        driver_for(session, "h1@lfs#a").instance_url(active_instance(session, share).location)
    )
    (root / "sub").mkdir()
    for i in range(files):
        (root / "sub" / f"f{i}").write_bytes(b"x" * size)
    os.symlink("sub/f0", root / "link")
    session.commit()
    return share.id, root


def _database(db_url: str) -> dict[str, list[Any]]:
    with session_scope(db_url) as s:
        return {
            t.name: sorted(map(tuple, s.execute(select(t)).all()), key=repr)
            for t in Base.metadata.sorted_tables
        }


def _tree(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.lstat().st_mtime_ns) for p in root.rglob("*"))


def test_plan_reports_and_changes_nothing(session: Session, db_url: str, pools_dir: Path) -> None:
    share_id, _ = _share_with_files(session, 30, 1000)
    before, tree = _database(db_url), _tree(pools_dir)

    plan = plan_migration(
        share_id, _request("h1@lfs#b", force_host_assisted_migration=True), db_url=db_url
    )

    assert _database(db_url) == before  # no migration row, no instance, no pool lock kept
    assert _tree(pools_dir) == tree  # no destination directory
    assert plan.mechanism == "host" and "force_host_assisted" in plan.decision
    assert (plan.files, plan.bytes, plan.links, plan.dirs) == (30, 30_000, 1, 2)
    assert plan.capacity == "fits: 1 GiB needed, 20 GiB free on h1@lfs#b"
    assert plan.source_can_freeze and plan.freeze.startswith("yes")
    assert plan.mover_rate_runs == 0 and plan.mover_rate_work_per_s == DEFAULT_WORK_PER_S
    assert plan.estimate_s == pytest.approx(
        (30_000 + 30 * ENTRY_WEIGHT_BYTES) / DEFAULT_WORK_PER_S, abs=0.1
    )


def test_driver_row_and_measured_rate(session: Session, db_url: str) -> None:
    share_id, _ = _share_with_files(session, 10, 1 << 20)
    with session_scope(db_url) as s:  # two earlier copies here: 40 MiB in 4 s
        for _ in range(2):
            s.add(MoverRate(hostname=this_host(), files=0, bytes=20 << 20, seconds=2.0))
    plan = plan_migration(share_id, _request("h1@lfs#b"), db_url=db_url)
    assert plan.mechanism == "driver" and plan.decision.startswith("driver-assisted")
    assert plan.mover_rate_runs == 2 and plan.mover_rate_work_per_s == 10 << 20
    assert plan.estimate_s == pytest.approx(
        ((10 << 20) + 10 * ENTRY_WEIGHT_BYTES) / (10 << 20), 0.1
    )


@pytest.mark.parametrize(
    ("host", "error"),
    [
        ("h1@lfs#nope", InvalidInputError),
        ("nobody@x#y", NotFoundError),
        ("h1@lfs", InvalidInputError),
    ],
)
def test_invalid_host_gets_the_api_text(
    session: Session, db_url: str, host: str, error: type[SharemigError]
) -> None:
    share_id, _ = _share_with_files(session, 1, 1)
    with pytest.raises(error) as planned:
        plan_migration(share_id, _request(host), db_url=db_url)
    with pytest.raises(error) as started, session_scope(db_url) as s:
        admit_start(s, share_id, _request(host), project_id=None)
    assert str(planned.value) == str(started.value)
    assert host.split("#")[0] in str(planned.value)


def test_a_full_pool_is_refused_as_at_start(session: Session, db_url: str) -> None:
    share = create_share(session, project_id="p1", size=15, host="h1@lfs#b", name="big")
    session.commit()
    with pytest.raises(InvalidInputError, match="cannot take share"):
        plan_migration(share.id, _request("h1@lfs#a"), db_url=db_url)

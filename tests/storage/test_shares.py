"""Share lifecycle on real pool directories: placement, create/delete, snapshots, exports."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from storage.catalog import create_share_type
from storage.catalog import ensure_default_share_type as default_type
from storage.errors import CapacityError, InvalidInputError, InvalidStateError, NotFoundError
from storage.pools import allocated_gb
from storage.scheduler import pick_pool, rank_pools
from storage.shares import (
    active_instance,
    allow_access,
    create_share,
    create_snapshot,
    delete_share,
    delete_snapshot,
    export_locations,
    get_share,
    list_access,
    list_snapshots,
)


def _instance_dir(session: Session, share_id: str, pools_dir: Path) -> Path:
    share = get_share(session, share_id)
    inst = active_instance(session, share)
    pool_dir = {"h1@lfs#a": "a", "h1@lfs#b": "b", "h2@obj#bucket": "obj"}[inst.pool_name]
    return pools_dir / pool_dir / inst.location


def test_default_type_goes_to_the_emptiest_snapshot_capable_pool(session: Session) -> None:
    share = create_share(session, project_id="p", size=5)
    # h2@obj#bucket has the most room but the fsspec driver has no snapshots; the default type
    # asks for snapshot_support, so the larger localfs pool wins.
    assert share.host == "h1@lfs#b"
    verdicts = {f.pool.name: f.reason for f in rank_pools(session, default_type(session), 1)}
    assert verdicts["h2@obj#bucket"] == "driver fsspec has no snapshot support"


def test_weighing_by_free_capacity_spreads_shares(session: Session) -> None:
    hosts = [create_share(session, project_id="p", size=6).host for _ in range(3)]
    # b (20) takes 6 -> 14 free; b again -> 8 free; then a (10 free) beats b (8 free)
    assert hosts == ["h1@lfs#b", "h1@lfs#b", "h1@lfs#a"]
    assert allocated_gb(session) == {"h1@lfs#b": 12, "h1@lfs#a": 6}


def test_type_without_snapshots_may_land_on_fsspec_pool(session: Session) -> None:
    plain = create_share_type(
        session, "plain", {"snapshot_support": "False", "driver_handles_share_servers": "False"}
    )
    assert pick_pool(session, plain, 1).name == "h2@obj#bucket"


def test_no_fitting_pool_says_why(session: Session) -> None:
    with pytest.raises(CapacityError) as info:
        create_share(session, project_id="p", size=21)
    msg = str(info.value)
    assert "h1@lfs#b: 20 GiB free, 21 GiB needed" in msg
    assert "h2@obj#bucket: driver fsspec has no snapshot support" in msg


def test_dhss_true_types_are_refused(session: Session) -> None:
    dhss = create_share_type(session, "dhss", {"driver_handles_share_servers": "True"})
    with pytest.raises(CapacityError, match="share servers"):
        pick_pool(session, dhss, 1)


def test_create_and_delete_make_and_remove_real_directories(
    session: Session, pools_dir: Path
) -> None:
    share = create_share(session, project_id="p", size=1, name="eng")
    data = _instance_dir(session, share.id, pools_dir)
    assert data.is_dir()
    (data / "hello.txt").write_text("hi")
    [loc] = export_locations(session, share.id)
    assert loc.path.endswith(str(data)) and loc.preferred
    delete_share(session, share.id)
    assert not data.exists()
    with pytest.raises(NotFoundError):
        get_share(session, share.id)


def test_share_on_fsspec_pool_exports_its_url(session: Session, pools_dir: Path) -> None:
    plain = create_share_type(session, "plain", {"snapshot_support": "False"})
    share = create_share(session, project_id="p", size=1, share_type_id=plain.id)
    data = _instance_dir(session, share.id, pools_dir)
    assert data.is_dir()
    assert [e.path for e in export_locations(session, share.id)] == [str(data)]


def test_other_projects_do_not_see_a_share(session: Session) -> None:
    share = create_share(session, project_id="p", size=1)
    with pytest.raises(NotFoundError):
        get_share(session, share.id, project_id="other")


def test_snapshots_are_point_in_time_copies(session: Session, pools_dir: Path) -> None:
    share = create_share(session, project_id="p", size=1)
    data = _instance_dir(session, share.id, pools_dir)
    (data / "f").write_text("v1")
    snap = create_snapshot(session, share.id, name="s1")
    (data / "f").write_text("v2")
    assert snap.status == "available"
    snap_dir = pools_dir / "b" / ".snapshots" / data.name / snap.id
    assert (snap_dir / "f").read_text() == "v1"
    assert [s.id for s in list_snapshots(session, share.id)] == [snap.id]
    with pytest.raises(InvalidStateError, match="snapshot"):
        delete_share(session, share.id)
    delete_snapshot(session, snap.id)
    assert not snap_dir.exists() and list_snapshots(session, share.id) == []
    delete_share(session, share.id)


def test_fsspec_pool_refuses_snapshots(session: Session) -> None:
    plain = create_share_type(session, "plain", {"snapshot_support": "False"})
    share = create_share(session, project_id="p", size=1, share_type_id=plain.id)
    with pytest.raises(InvalidStateError, match="no snapshot support"):
        create_snapshot(session, share.id)


def test_access_rules_keep_their_level(session: Session) -> None:
    share = create_share(session, project_id="p", size=1)
    allow_access(session, share.id, "ip", "10.0.0.0/24", "ro")
    allow_access(session, share.id, "ip", "10.0.1.5")
    assert [(r.access_to, r.access_level) for r in list_access(session, share.id)] == [
        ("10.0.0.0/24", "ro"),
        ("10.0.1.5", "rw"),
    ]
    with pytest.raises(InvalidInputError, match="access_level"):
        allow_access(session, share.id, "ip", "10.0.0.9", "rx")


def test_migrating_share_cannot_be_deleted(session: Session) -> None:
    share = create_share(session, project_id="p", size=1)
    share.status, share.task_state = "migrating", "data_copying_in_progress"
    with pytest.raises(InvalidStateError, match="migration"):
        delete_share(session, share.id)

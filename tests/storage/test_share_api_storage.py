"""The storage side of the share calls tempest makes: resize, share from snapshot, private
types with access lists, snapshot metadata, rules frozen while a share migrates, and a
destination the scheduler refuses only after the start was admitted. Real pool directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from storage.catalog import (
    add_type_access,
    create_share_type,
    delete_share_type,
    get_share_type,
    list_share_types,
    remove_type_access,
    type_access,
    update_share_type,
)
from storage.errors import (
    CapacityError,
    ConflictError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    PermanentError,
)
from storage.migration_admission import StartRequest, admit_start
from storage.migration_lifecycle import reserve_destination
from storage.share_size import DATA_LOSS, extend_share, shrink_share
from storage.shares import (
    active_instance,
    allow_access,
    create_share,
    create_snapshot,
    get_share,
)
from storage.snapshot_metadata import check_metadata, delete_item, get_metadata, set_metadata

GiB = 1 << 30


def _data(session: Session, share_id: str, pools_dir: Path) -> Path:
    inst = active_instance(session, get_share(session, share_id))
    return pools_dir / {"h1@lfs#a": "a", "h1@lfs#b": "b"}[inst.pool_name] / inst.location


def test_extend_needs_room_on_the_pool_and_a_bigger_size(session: Session) -> None:
    share = create_share(session, project_id="p", size=5)  # on b (20 GiB)
    assert extend_share(session, share.id, 8).size == 8
    assert (share.size, share.status) == (8, "available")
    with pytest.raises(InvalidInputError, match="greater than current size"):
        extend_share(session, share.id, 8)
    with pytest.raises(CapacityError, match=r"has 12 GiB free.*needs 13 GiB"):
        extend_share(session, share.id, 21)


def test_shrink_below_the_data_is_refused_as_manila_refuses_it(
    session: Session, pools_dir: Path
) -> None:
    share = create_share(session, project_id="p", size=3)
    with (_data(session, share.id, pools_dir) / "big").open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, GiB + GiB // 2)  # allocated blocks, as du counts
    refused = shrink_share(session, share.id, 1)
    assert (refused.size, refused.status) == (3, DATA_LOSS)
    assert refused.refused is not None and "holds 1.50 GiB" in refused.refused
    # From that status a shrink the data fits is allowed, and ends `available`.
    done = shrink_share(session, share.id, 2)
    assert (done.size, done.status) == (2, "available")
    with pytest.raises(InvalidInputError, match="less than current size"):
        shrink_share(session, share.id, 2)


def test_resize_is_refused_while_the_share_migrates(session: Session) -> None:
    share = create_share(session, project_id="p", size=2)
    share.status, share.task_state = "migrating", "migration_driver_phase1_done"
    session.flush()
    with pytest.raises(InvalidStateError, match="status must be in"):
        extend_share(session, share.id, 3)
    share.status = "available"
    session.flush()
    with pytest.raises(InvalidStateError, match="busy with an active task"):
        shrink_share(session, share.id, 1)
    with pytest.raises(InvalidStateError, match="Access rules cannot be applied"):
        allow_access(session, share.id, "ip", "10.0.0.1")


def test_share_from_snapshot_holds_the_snapshot_data(session: Session, pools_dir: Path) -> None:
    parent = create_share(session, project_id="p", size=2)
    (_data(session, parent.id, pools_dir) / "f.txt").write_bytes(b"at snapshot time")
    snap = create_snapshot(session, parent.id, name="s")
    (_data(session, parent.id, pools_dir) / "f.txt").write_bytes(b"later")
    child = create_share(session, project_id="p", size=2, snapshot_id=snap.id)
    assert (child.host, child.snapshot_id, child.share_type_id) == (
        parent.host,
        snap.id,
        parent.share_type_id,
    )
    assert (_data(session, child.id, pools_dir) / "f.txt").read_bytes() == b"at snapshot time"
    with pytest.raises(InvalidInputError, match="equal or greater than snapshot size"):
        create_share(session, project_id="p", size=1, snapshot_id=snap.id)
    with pytest.raises(NotFoundError):
        create_share(session, project_id="other", size=2, snapshot_id=snap.id)


def test_private_types_and_their_access_lists(session: Session) -> None:
    specs: dict[str, object] = {"driver_handles_share_servers": "False"}
    secret = create_share_type(session, "secret", specs, is_public=False)
    names = {t.name for t in list_share_types(session, "p1")}
    assert "secret" not in names and "default" in names
    with pytest.raises(NotFoundError):
        get_share_type(session, secret.id, project_id="p1")
    add_type_access(session, secret.id, "p1")
    assert "secret" in {t.name for t in list_share_types(session, "p1")}
    assert get_share_type(session, "secret", project_id="p1").id == secret.id
    assert type_access(session, secret.id) == ["p1"]
    with pytest.raises(ConflictError, match="exists already"):
        add_type_access(session, secret.id, "p1")
    remove_type_access(session, secret.id, "p1")
    with pytest.raises(NotFoundError):
        remove_type_access(session, secret.id, "p1")
    # An admin sees private types only when asking for them.
    assert {t.name for t in list_share_types(session, "adm", is_public=False, admin=True)} == {
        "secret"
    }
    assert "secret" in {
        t.name for t in list_share_types(session, "adm", is_public="all", admin=True)
    }
    update_share_type(session, secret.id, description="for QA")
    public = update_share_type(session, secret.id, name="open", is_public=True, description="")
    assert (public.name, public.is_public, public.description) == ("open", True, None)
    with pytest.raises(ConflictError, match="public share type"):
        add_type_access(session, public.id, "p2")
    with pytest.raises(NotFoundError, match="public share types"):
        type_access(session, public.id)


def test_a_type_in_use_cannot_be_deleted(session: Session) -> None:
    gold = create_share_type(session, "gold", {"driver_handles_share_servers": "False"})
    share = create_share(session, project_id="p", size=1, share_type_id=gold.id)
    with pytest.raises(InvalidStateError, match=f"still in use.*{share.id}"):
        delete_share_type(session, gold.id)
    with pytest.raises(ConflictError, match="already exists"):
        create_share_type(session, "gold", {"driver_handles_share_servers": "False"})
    unused = create_share_type(session, "unused", {"driver_handles_share_servers": "False"})
    delete_share_type(session, unused.id)
    with pytest.raises(NotFoundError):
        get_share_type(session, unused.id)


def test_snapshot_metadata(session: Session) -> None:
    share = create_share(session, project_id="p", size=1)
    snap = create_snapshot(session, share.id, metadata={"a": "1"})
    assert set_metadata(session, snap.id, {"b": "2"}, "p", replace=False) == {"a": "1", "b": "2"}
    assert set_metadata(session, snap.id, {"c": "3"}, "p", replace=True) == {"c": "3"}
    delete_item(session, snap.id, "c", "p")
    assert get_metadata(session, snap.id, "p") == {}
    with pytest.raises(NotFoundError):
        delete_item(session, snap.id, "c", "p")
    with pytest.raises(NotFoundError):
        get_metadata(session, snap.id, "other")
    for bad in ({"": "x"}, {"k": ""}, {"k": "v" * 1024}, {"k": 5}, ["k"]):
        with pytest.raises(InvalidInputError):
            check_metadata(bad)


def test_a_destination_with_other_capabilities_is_admitted_then_refused(
    session: Session, db_url: str
) -> None:
    """Manila's scheduler, not its API, refuses a pool that cannot serve the type (tempest's
    test_migrate_share_change_type_no_valid_host): the start is a 202, the run then fails."""
    share = create_share(session, project_id="p", size=1)
    dhss = create_share_type(session, "dhss", {"driver_handles_share_servers": "True"})
    from storage.catalog import create_share_network

    net = create_share_network(session, "p")
    dest = "h1@lfs#a" if share.host == "h1@lfs#b" else "h1@lfs#b"
    req = StartRequest(
        host=dest,
        preserve_metadata=False,
        preserve_snapshots=False,
        writable=False,
        nondisruptive=False,
        new_share_type_id=dhss.id,
        new_share_network_id=net.id,
    )
    migration = admit_start(session, share.id, req, project_id=None)
    assert migration is not None and share.task_state == "migration_starting"
    session.commit()
    with pytest.raises(PermanentError, match="driver_handles_share_servers"):
        reserve_destination(migration.id, db_url=db_url)

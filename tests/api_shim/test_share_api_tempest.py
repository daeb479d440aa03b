"""The share calls Manila's tempest tests make, through the real python-manilaclient where it
has a call, and over plain HTTP for the microversion details it hides: extend/shrink, share
from snapshot, share-replicas, share types (private, access lists, PUT, DELETE, keys per
version), snapshot metadata, and access rules refused while a share migrates."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kit.manila_api import assert_fault
from tests.kit.shim_server import ShimServer

MakeShare = Callable[..., str]
GiB = 1 << 30


def manila(
    shim: ShimServer, version: str = "2.79", token: str = "admin", project: str = "demo"
) -> Any:
    from manilaclient import client

    return client.Client(
        version, input_auth_token=shim.tokens[token], service_catalog_url=shim.endpoint(project)
    )


def data_dir(shim: ShimServer, share_id: str) -> Path:
    with shim.client("admin") as c:
        locs = c.get(f"/v2/demo/shares/{share_id}/export_locations").json()["export_locations"]
    return Path(locs[0]["path"].split(":", 1)[1])


def test_extend_and_shrink_with_manilaclient(shim: ShimServer) -> None:
    from manilaclient.common.apiclient import exceptions

    c = manila(shim)
    share = c.shares.create("NFS", 2, name="resize")
    c.shares.extend(share, 4)
    assert (c.shares.get(share).size, c.shares.get(share).status) == (4, "available")
    with pytest.raises(exceptions.BadRequest, match="must be greater than current size"):
        c.shares.extend(share, 3)
    with (data_dir(shim, share.id) / "big").open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, GiB + GiB // 2)
    c.shares.shrink(share, 1)  # Manila accepts, then refuses in the share manager
    after = c.shares.get(share)
    assert (after.size, after.status) == (4, "shrinking_possible_data_loss_error")
    c.shares.shrink(share, 2)
    assert (c.shares.get(share).size, c.shares.get(share).status) == (2, "available")
    with shim.client("admin", version="2.6") as legacy:
        resp = legacy.post(
            f"/v2/demo/shares/{share.id}/action", json={"os-extend": {"new_size": 3}}
        )
        assert resp.status_code == 202
        assert_fault(
            legacy.post(f"/v2/demo/shares/{share.id}/action", json={"os-shrink": {}}),
            400,
            says="new_size",
        )


def test_resize_and_access_are_refused_while_migrating(
    shim: ShimServer, make_share: MakeShare, set_state: Callable[..., str]
) -> None:
    """tempest's test_share_resize_during_share_migration and _add_access_rule_during_…"""
    share = make_share(size=2)
    set_state(share, "migration_driver_phase1_done", status="migrating")
    with shim.client("admin") as c:
        for body, says in (
            ({"extend": {"new_size": 3}}, "status must be in (available)"),
            ({"shrink": {"new_size": 1}}, "current status is: migrating"),
            (
                {"allow_access": {"access_type": "ip", "access_to": "50.50.50.50"}},
                "Access rules cannot be applied",
            ),
        ):
            assert_fault(c.post(f"/v2/demo/shares/{share}/action", json=body), 400, says=says)


def test_share_from_snapshot_with_manilaclient(shim: ShimServer) -> None:
    from manilaclient.common.apiclient import exceptions

    c = manila(shim)
    parent = c.shares.create("NFS", 1, name="parent")
    (data_dir(shim, parent.id) / "f.txt").write_bytes(b"snapped")
    snap = c.share_snapshots.create(parent, name="s1")
    child = c.shares.create("NFS", None, snapshot_id=snap.id, name="child")
    shown = c.shares.get(child)
    assert (shown.snapshot_id, shown.size, shown.host) == (snap.id, 1, c.shares.get(parent).host)
    assert (data_dir(shim, child.id) / "f.txt").read_bytes() == b"snapped"
    with pytest.raises(exceptions.NotFound):
        c.shares.create("NFS", 1, snapshot_id="no-such-snapshot")
    caps = {p.name: p.capabilities for p in c.pools.list(detailed=True)}
    assert caps["sharemig@localfs#pool-a"]["create_share_from_snapshot_support"] is True
    assert caps["sharemig@objects#bucket"]["create_share_from_snapshot_support"] is False


def test_share_replicas_list_empty(shim: ShimServer) -> None:
    with shim.client("member") as c:
        for path in ("/v2/demo/share-replicas", "/v2/demo/share-replicas/detail"):
            resp = c.get(path)
            assert (resp.status_code, resp.json()) == (200, {"share_replicas": []})


def test_private_types_with_manilaclient(shim: ShimServer) -> None:
    admin = manila(shim)
    member = manila(shim, token="other_member", project="other")
    secret = admin.share_types.create("secret", False, is_public=False)
    assert "secret" not in [t.name for t in member.share_types.list()]
    assert "secret" not in [t.name for t in admin.share_types.list(show_all=False)]
    assert "secret" in [t.name for t in admin.share_types.list(show_all=True)]
    with shim.client("other_member") as c:
        body = {"share": {"share_proto": "NFS", "size": 1, "share_type": secret.id}}
        assert_fault(c.post("/v2/other/shares", json=body), 404, says="could not be found")
    admin.share_type_access.add_project_access(secret, "other")
    assert [a.project_id for a in admin.share_type_access.list(secret)] == ["other"]
    assert "secret" in [t.name for t in member.share_types.list()]
    admin.share_type_access.remove_project_access(secret, "other")
    assert "secret" not in [t.name for t in member.share_types.list()]
    renamed = admin.share_types.get(secret).update(name="secret2", description="for QA")
    assert (renamed.name, renamed.description) == ("secret2", "for QA")
    admin.share_types.delete(secret)
    assert "secret2" not in [t.name for t in admin.share_types.list(show_all=True)]


def test_share_type_keys_follow_the_microversion(shim: ShimServer) -> None:
    body = {
        "share_type": {"name": "old-style", "extra_specs": {"driver_handles_share_servers": False}}
    }
    with shim.client("admin", version="2.6") as c:
        created = c.post("/v2/demo/types", json=body).json()
        view = created["share_type"]
        assert created["volume_type"] == view
        assert "os-share-type-access:is_public" in view
        assert "share_type_access:is_public" not in view
        assert view["extra_specs"]["snapshot_support"] == "True"  # set for callers below 2.24
        listed = c.get("/v2/demo/types").json()
        assert listed["volume_types"] == listed["share_types"]
        access = c.get(f"/v2/demo/types/{view['id']}/os-share-type-access")
        assert_fault(access, 404, says="public share types")
    body["share_type"]["name"] = "new-style"
    with shim.client("admin", version="2.24") as c:
        view = c.post("/v2/demo/types", json=body).json()["share_type"]
        assert "snapshot_support" not in view["extra_specs"]
        assert "share_type_access:is_public" in view
        assert "os-share-type-access:is_public" not in view
        assert_fault(c.post("/v2/demo/types", json=body), 409, says="already exists")
        assert_fault(c.put(f"/v2/demo/types/{view['id']}", json={"share_type": {"name": "x"}}), 404)
    with shim.client("member", version="2.24") as c:
        seen = c.get(f"/v2/demo/types/{view['id']}").json()["share_type"]["extra_specs"]
        assert seen["snapshot_support"] is False  # Manila's inferred default for users


def test_share_type_bad_input(shim: ShimServer, make_share: MakeShare) -> None:
    with shim.client("admin") as c:
        default_id = c.get("/v2/demo/types/default").json()["share_type"]["id"]
        make_share()
        assert_fault(c.delete(f"/v2/demo/types/{default_id}"), 400, says="still in use")
        assert_fault(
            c.put(f"/v2/demo/types/{default_id}", json={"share_type": {}}), 400, says="Specify"
        )
        assert_fault(
            c.post(
                f"/v2/demo/types/{default_id}/action", json={"addProjectAccess": {"project": "x"}}
            ),
            409,
            says="public share type",
        )
        assert_fault(
            c.post(f"/v2/demo/types/{default_id}/action", json={"addProjectAccess": {}}),
            400,
            says="project",
        )
        assert_fault(c.delete("/v2/demo/types/no-such-type"), 404)
    with shim.client("member") as c:
        assert_fault(c.delete(f"/v2/demo/types/{default_id}"), 403)


def test_snapshot_metadata_with_manilaclient(shim: ShimServer, make_share: MakeShare) -> None:
    c = manila(shim, version="2.73")
    share = make_share()
    with shim.client("admin", version="2.73") as h:
        snap = h.post(
            "/v2/demo/snapshots",
            json={"snapshot": {"share_id": share, "metadata": {"purpose": "qa"}}},
        ).json()["snapshot"]
    assert snap["metadata"] == {"purpose": "qa"}
    c.share_snapshots.set_metadata(snap["id"], {"tier": "gold"})
    assert c.share_snapshots.get_metadata(snap["id"])._info == {"purpose": "qa", "tier": "gold"}
    c.share_snapshots.delete_metadata(snap["id"], ["purpose"])
    assert c.share_snapshots.get_metadata(snap["id"])._info == {"tier": "gold"}
    with shim.client("admin", version="2.72") as h:
        assert "metadata" not in h.get(f"/v2/demo/snapshots/{snap['id']}").json()["snapshot"]
        assert_fault(h.get(f"/v2/demo/snapshots/{snap['id']}/metadata"), 404, says="2.73")
    with shim.client("admin", version="2.73") as h:
        bad = h.post(f"/v2/demo/snapshots/{snap['id']}/metadata", json={"metadata": {"k": ""}})
        assert_fault(bad, 400, says="blank")


def test_the_share_api_keeps_answering_at_low_versions(admin: httpx.Client) -> None:
    assert admin.get("/v2/demo/share-replicas/detail").status_code == 200


def test_extra_specs_with_manilaclient(shim: ShimServer) -> None:
    """`manila type-key` / `openstack share type set --extra-specs` and Manila's refusals."""
    admin = manila(shim, version="2.24")
    gold = admin.share_types.create("gold", False, extra_specs={"snapshot_support": True})
    gold.set_keys({"availability_zones": " nova , az2", "tier": "1"})
    assert gold.get_keys(prefer_resource_data=False) == {
        "driver_handles_share_servers": "False",
        "snapshot_support": "True",
        "availability_zones": "nova,az2",
        "tier": "1",
    }
    gold.unset_keys(["tier", "snapshot_support"])
    left = gold.get_keys(prefer_resource_data=False)
    assert set(left) == {"driver_handles_share_servers", "availability_zones"}
    url = f"/v2/demo/types/{gold.id}/extra_specs"
    with shim.client("admin", version="2.24") as c:
        assert c.put(f"{url}/color", json={"color": "blue"}).json() == {"color": "blue"}
        assert c.get(f"{url}/color").json() == {"color": "blue"}
        assert_fault(c.get(f"{url}/nope"), 404)
        assert_fault(c.delete(f"{url}/nope"), 404, says="no extra specs with key nope")
        assert_fault(c.delete(f"{url}/driver_handles_share_servers"), 403, says="can't be")
        assert_fault(c.put(f"{url}/color", json={"size": "1"}), 400, says="URI mismatch")
        assert_fault(c.put(f"{url}/a", json={"a": "1", "b": "2"}), 400, says="too many")
        for bad in (
            {"snapshot_support": "maybe"},
            {"provisioning:max_share_size": "0"},
            {"key": ""},
        ):
            assert_fault(c.post(url, json={"extra_specs": bad}), 400, says="Invalid extra_spec")
        assert_fault(c.post(url, json={"extra_specs": {"a b": "1"}}), 400, says="Key names")
        assert_fault(c.get("/v2/demo/types/no-such-type/extra_specs"), 404)
    with shim.client("admin", version="2.23") as c:
        c.post(url, json={"extra_specs": {"snapshot_support": "False"}})
        assert_fault(c.delete(f"{url}/snapshot_support"), 403, says="can't be deleted")
    with shim.client("member") as c:
        assert_fault(c.get(url), 403)

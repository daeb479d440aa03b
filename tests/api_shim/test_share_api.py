"""The share API subset the clients read (contract §12, clients.md), per microversion."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.kit.manila_api import assert_fault
from tests.kit.shim_server import ShimServer

MakeShare = Callable[..., str]


def get_share(
    shim: ShimServer, share_id: str, version: str, token: str = "admin"
) -> dict[str, object]:
    with shim.client(token, version=version) as c:
        resp = c.get(f"/v2/demo/shares/{share_id}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["share"])


def test_create_with_client_nulls_and_show(admin: httpx.Client) -> None:
    body = {
        "share": {
            "share_proto": "nfs",
            "size": 1,
            "name": "a",
            "description": None,
            "metadata": {},
            "share_network_id": None,
            "share_type": None,
            "snapshot_id": None,
            "is_public": False,
            "availability_zone": None,
            "scheduler_hints": {},
        }
    }
    resp = admin.post("/v2/demo/shares", json=body)
    assert resp.status_code == 200
    share = resp.json()["share"]
    assert (share["status"], share["share_proto"], share["task_state"]) == (
        "available",
        "NFS",
        None,
    )
    assert share["share_type_name"] == "default" and share["metadata"] == {}
    assert share["host"].startswith("sharemig@")


@pytest.mark.parametrize(
    ("version", "present", "absent"),
    [
        (
            "2.0",
            {"export_location", "export_locations", "share_type"},
            {"task_state", "share_type_name"},
        ),
        ("2.5", {"task_state"}, {"share_type_name"}),
        ("2.6", {"share_type_name"}, {"access_rules_status"}),
        ("2.9", {"task_state"}, {"export_locations", "export_location", "access_rules_status"}),
        ("2.10", {"access_rules_status"}, {"export_locations"}),
        ("2.69", {"is_soft_deleted", "progress"}, {"encryption_key_ref"}),
        (
            "2.99",
            {"encryption_key_ref", "has_replicas", "share_group_id", "is_soft_deleted"},
            set(),
        ),
    ],
)
def test_fields_follow_the_microversion(
    shim: ShimServer, make_share: MakeShare, version: str, present: set[str], absent: set[str]
) -> None:
    view = get_share(shim, make_share(), version)
    assert present <= set(view) and not absent & set(view)
    if (version >= "2.6" and len(version) > 3) or version == "2.6":
        assert view["share_type"] != view["share_type_name"]  # the type's id from 2.6


def test_host_is_shown_to_admins_only(shim: ShimServer, make_share: MakeShare) -> None:
    share = make_share()
    assert "host" in get_share(shim, share, "2.99")
    assert "host" not in get_share(shim, share, "2.99", token="member")


def test_list_queries_the_clients_send(
    shim: ShimServer, admin: httpx.Client, make_share: MakeShare
) -> None:
    share = make_share(name="findme")
    detail = admin.get("/v2/demo/shares/detail", params={"all_tenants": "1", "is_public": "True"})
    assert share in [s["id"] for s in detail.json()["shares"]]
    # The soft-deleted query must not return live shares, or OSC sees every name twice.
    soft = admin.get(
        "/v2/demo/shares/detail",
        params={"all_tenants": "1", "is_public": "True", "is_soft_deleted": "True"},
    )
    assert soft.status_code == 200 and soft.json()["shares"] == []
    by_name = admin.get("/v2/demo/shares", params={"name": "findme"}).json()["shares"]
    assert [s["id"] for s in by_name] == [share] and set(by_name[0]) == {"id", "name", "links"}


def test_delete(admin: httpx.Client, make_share: MakeShare) -> None:
    share = make_share()
    resp = admin.delete(f"/v2/demo/shares/{share}")
    assert resp.status_code == 202 and resp.content == b""
    assert_fault(admin.get(f"/v2/demo/shares/{share}"), 404)
    assert_fault(admin.delete(f"/v2/demo/shares/{share}"), 404)


def test_a_migrating_share_cannot_be_deleted(
    admin: httpx.Client, make_share: MakeShare, set_state: Callable[..., str]
) -> None:
    share = make_share()
    set_state(share, "data_copying_in_progress")
    assert_fault(admin.delete(f"/v2/demo/shares/{share}"), 403, says="migrat")


def test_export_locations(shim: ShimServer, make_share: MakeShare) -> None:
    share = make_share()
    with shim.client("admin", version="2.99") as c:
        (loc,) = c.get(f"/v2/demo/shares/{share}/export_locations").json()["export_locations"]
        assert {"id", "path", "preferred", "metadata", "share_instance_id", "is_admin_only"} <= set(
            loc
        )
        one = c.get(f"/v2/demo/shares/{share}/export_locations/{loc['id']}")
        assert one.json()["export_location"]["path"] == loc["path"]
    with shim.client("member", version="2.13") as c:
        (loc,) = c.get(f"/v2/demo/shares/{share}/export_locations").json()["export_locations"]
        assert set(loc) == {"id", "path"}
    with shim.client("admin", version="2.8") as c:
        assert_fault(c.get(f"/v2/demo/shares/{share}/export_locations"), 404)


def test_snapshots(admin: httpx.Client, make_share: MakeShare) -> None:
    share = make_share()
    resp = admin.post("/v2/demo/snapshots", json={"snapshot": {"share_id": share, "name": "s1"}})
    assert resp.status_code == 202
    snap = resp.json()["snapshot"]
    assert (snap["share_id"], snap["status"], snap["name"]) == (share, "available", "s1")
    assert admin.get(f"/v2/demo/snapshots/{snap['id']}").json()["snapshot"]["id"] == snap["id"]
    assert snap["id"] in [
        s["id"] for s in admin.get("/v2/demo/snapshots/detail").json()["snapshots"]
    ]
    assert_fault(admin.delete(f"/v2/demo/shares/{share}"), 403, says="snapshot")
    assert admin.delete(f"/v2/demo/snapshots/{snap['id']}").status_code == 202
    assert_fault(admin.get(f"/v2/demo/snapshots/{snap['id']}"), 404)


def test_types_networks_and_pools(shim: ShimServer, admin: httpx.Client) -> None:
    default = admin.get("/v2/demo/types/default").json()["share_type"]
    assert (
        default["name"] == "default"
        and "driver_handles_share_servers" in default["required_extra_specs"]
    )
    assert default["id"] in [t["id"] for t in admin.get("/v2/demo/types").json()["share_types"]]
    net = admin.post("/v2/demo/share-networks", json={"share_network": {"name": "n1"}}).json()[
        "share_network"
    ]
    assert admin.get(f"/v2/demo/share-networks/{net['id']}").json()["share_network"]["name"] == "n1"
    pools = admin.get("/v2/demo/scheduler-stats/pools").json()["pools"]
    names = {p["name"] for p in pools}
    assert {"sharemig@localfs#pool-a", "sharemig@localfs#pool-b"} <= names
    assert "retired@old#p" not in names  # a disabled pool is no destination
    detail = admin.get("/v2/demo/scheduler-stats/pools/detail", params={"backend": "local"}).json()[
        "pools"
    ]
    assert detail and all(p["backend"] == "localfs" for p in detail)
    assert {"total_capacity_gb", "free_capacity_gb"} <= set(detail[0]["capabilities"])
    assert_fault(admin.get("/v2/demo/scheduler-stats/pools", params={"pool": "("}), 400)
    with shim.client("member") as c:
        assert_fault(c.get("/v2/demo/scheduler-stats/pools"), 403)
        assert_fault(c.post("/v2/demo/types", json={"share_type": {"name": "x"}}), 403)


def test_access_rules_through_both_transports(shim: ShimServer, make_share: MakeShare) -> None:
    share = make_share()
    with shim.client("member", version="2.44") as c:
        allow = {
            "allow_access": {"access_type": "ip", "access_to": "10.0.0.0/24", "access_level": "ro"}
        }
        rule = c.post(f"/v2/demo/shares/{share}/action", json=allow).json()["access"]
        listed = c.post(f"/v2/demo/shares/{share}/action", json={"access_list": None}).json()
        assert [r["id"] for r in listed["access_list"]] == [rule["id"]]
    with shim.client("member", version="2.6") as c:
        legacy = c.post(f"/v2/demo/shares/{share}/action", json={"os-access_list": None})
        assert legacy.json()["access_list"][0]["access_level"] == "ro"
    with shim.client("member", version="2.99") as c:
        assert_fault(c.post(f"/v2/demo/shares/{share}/action", json={"access_list": None}), 404)
        rules = c.get("/v2/demo/share-access-rules", params={"share_id": share}).json()[
            "access_list"
        ]
        assert rules[0]["access_to"] == "10.0.0.0/24" and "metadata" in rules[0]
        assert (
            c.get(f"/v2/demo/share-access-rules/{rule['id']}").json()["access"]["share_id"] == share
        )
        deny = {"deny_access": {"access_id": rule["id"]}}
        assert c.post(f"/v2/demo/shares/{share}/action", json=deny).status_code == 202
        assert (
            c.get("/v2/demo/share-access-rules", params={"share_id": share}).json()["access_list"]
            == []
        )
        bad = {"allow_access": {"access_type": "ip", "access_to": "x", "access_level": "admin"}}
        assert_fault(c.post(f"/v2/demo/shares/{share}/action", json=bad), 400, says="access_level")
        assert_fault(c.get("/v2/demo/share-access-rules"), 400, says="share_id")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"share": {"size": 1}}', "share_proto"),
        (b'{"share": {"share_proto": "NFS", "size": 0}}', "size"),
        (b'{"share": {"share_proto": "NFS", "size": "big"}}', "size"),
        (b'{"share": {"share_proto": "NFS", "size": true}}', "size"),
        (b'{"share": {"share_proto": "NFS", "size": 1, "metadata": []}}', "metadata"),
        (b'{"share": {"share_proto": "NFS", "size": 1, "is_public": "maybe"}}', "is_public"),
        (b'{"share": {"share_proto": "NFS", "size": 1, "name": 5}}', "name"),
        (b'{"share": "x"}', "Malformed"),
        (b"[]", "Malformed"),
        (b"{", "Malformed"),
    ],
)
def test_bad_create_bodies_are_400_never_422(
    admin: httpx.Client, content: bytes, says: str
) -> None:
    resp = admin.post(
        "/v2/demo/shares", content=content, headers={"Content-Type": "application/json"}
    )
    assert_fault(resp, 400, says=says)


def test_unknown_share_type_on_create_is_404(admin: httpx.Client) -> None:
    resp = admin.post(
        "/v2/demo/shares", json={"share": {"share_proto": "NFS", "size": 1, "share_type": "nope"}}
    )
    assert_fault(resp, 404, says="nope")


def test_routing_misses_are_plain_404s(shim: ShimServer, make_share: MakeShare) -> None:
    share = make_share()
    with shim.client("admin") as c:
        for method, path in [
            ("GET", "/v2/demo/nothing/here"),
            ("DELETE", f"/v2/demo/shares/{share}/migration-progress"),
            ("POST", f"/v2/demo/shares/{share}/migration-progress"),
            ("PUT", "/v2/demo/shares/detail"),
        ]:
            resp = c.request(method, path)
            assert resp.status_code == 404, (method, path)
            assert resp.headers["content-type"].startswith("text/plain")
    assert httpx.get(shim.url + "/nothing").status_code == 404

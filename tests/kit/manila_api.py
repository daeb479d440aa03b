"""Talking Manila's migration API to a shim over HTTP: request bodies, actions, faults, views."""

from __future__ import annotations

import httpx

from tests.kit.shim_server import ShimServer

FAULT = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest"}
NOTHING_PRESERVED = {
    "preserve_metadata": False,
    "preserve_snapshots": False,
    "writable": False,
    "nondisruptive": False,
}
"""The four flags a migration start must send, all off (the body, or a StartRequest's fields)."""
VALID_START = {
    "host": "sharemig@localfs#pool-b",
    **NOTHING_PRESERVED,
    "force_host_assisted_migration": False,
    "new_share_network_id": None,
    "new_share_type_id": None,
}


def start_body(**changes: object) -> dict[str, object]:
    """A valid `migration_start` action body, with `changes`."""
    return {"migration_start": {**VALID_START, **changes}}


def assert_fault(resp: httpx.Response, status: int, *, says: str = "") -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert list(body) == [FAULT[status]], body
    assert body[FAULT[status]]["code"] == status
    message = str(body[FAULT[status]]["message"])
    assert says in message, message
    return message


def action(
    shim: ShimServer,
    share_id: str,
    body: object,
    *,
    token: str = "admin",
    version: str | None = "2.99",
    experimental: bool = False,
    project: str = "demo",
) -> httpx.Response:
    headers = {"X-OpenStack-Manila-API-Experimental": "true"} if experimental else {}
    with shim.client(token, version=version, **headers) as c:
        return c.post(f"/v2/{project}/shares/{share_id}/action", json=body)


def progress_get(
    shim: ShimServer, share_id: str, version: str = "2.99", token: str = "admin"
) -> httpx.Response:
    with shim.client(token, version=version) as c:
        return c.get(f"/v2/demo/shares/{share_id}/migration-progress")


def share_view(shim: ShimServer, share_id: str) -> dict[str, object]:
    with shim.client("admin") as c:
        resp = c.get(f"/v2/demo/shares/{share_id}")
    assert resp.status_code == 200
    return dict(resp.json()["share"])


# --- §2.3: which version / experimental combination serves which operation -------------------


OSC_NO_GUARANTEES = (
    "--preserve-metadata",
    "False",
    "--preserve-snapshots",
    "False",
    "--writable",
    "False",
    "--nondisruptive",
    "False",
)
"""`openstack share migration start`'s four required guarantee flags, none asked for."""

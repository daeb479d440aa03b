"""Version discovery and microversion negotiation (contract §2, §12.1)."""

from __future__ import annotations

import httpx
import pytest

from tests.kit.shim_server import ShimServer

VERSION = "x-openstack-manila-api-version"
EXPERIMENTAL = "x-openstack-manila-api-experimental"


def test_root_is_an_unauthenticated_300_version_document(shim: ShimServer) -> None:
    # Clients send their token and their maximum version even here; neither may matter.
    for headers in ({}, {"X-Auth-Token": "whatever", "X-OpenStack-Manila-API-Version": "2.98"}):
        resp = httpx.get(shim.url + "/", headers=headers)
        assert resp.status_code == 300
        (doc,) = resp.json()["versions"]
        assert (doc["status"], doc["version"], doc["min_version"]) == ("CURRENT", "2.99", "2.0")
        assert {link["rel"] for link in doc["links"]} == {"describedby", "self"}
        assert VERSION not in resp.headers and "vary" not in resp.headers


def test_v2_document_is_authenticated_and_versioned(shim: ShimServer) -> None:
    assert httpx.get(shim.url + "/v2/").status_code == 401
    with shim.client("member", version=None) as c:
        resp = c.get("/v2/")
    assert resp.status_code == 200
    assert resp.json()["versions"][0]["version"] == "2.99"
    assert resp.headers[VERSION] == "2.0"  # no header means 2.0, not the newest
    assert resp.headers["vary"] == "X-OpenStack-Manila-API-Version"


@pytest.mark.parametrize("raw", ["2.99", "2.0", "2.22", "2.10"])
def test_served_versions_are_echoed(shim: ShimServer, raw: str) -> None:
    with shim.client("member", version=raw) as c:
        resp = c.get("/v2/demo/shares")
    assert resp.status_code == 200
    assert resp.headers[VERSION] == raw
    assert EXPERIMENTAL not in resp.headers


@pytest.mark.parametrize("raw", ["latest", "2.05", "02.5", "v2.1", "2.1.1", "2", "-2.1", "2.x", ""])
def test_malformed_version_is_400_without_version_headers(shim: ShimServer, raw: str) -> None:
    with shim.client("member", version=raw, **{"X-OpenStack-Manila-API-Experimental": "true"}) as c:
        resp = c.get("/v2/demo/shares/does-not-exist")
    assert resp.status_code == 400
    body = resp.json()["badRequest"]
    assert body["code"] == 400 and "MajorNum.MinorNum" in body["message"]
    assert VERSION not in resp.headers and EXPERIMENTAL not in resp.headers
    assert "vary" not in resp.headers


@pytest.mark.parametrize("raw", ["1.0", "2.100", "3.0", "1.99"])
def test_out_of_range_version_is_406_compute_fault(shim: ShimServer, raw: str) -> None:
    with shim.client("admin", version=raw, **{"X-OpenStack-Manila-API-Experimental": "true"}) as c:
        resp = c.post("/v2/demo/shares/nope/action", json={"bogus": 1})
    assert resp.status_code == 406
    fault = resp.json()["computeFault"]
    assert fault["code"] == 406
    assert fault["message"] == (
        f"Version {raw} is not supported by the API. Minimum is 2.0 and maximum is 2.99."
    )
    assert resp.headers[VERSION] == raw
    assert resp.headers["vary"] == "X-OpenStack-Manila-API-Version"
    assert EXPERIMENTAL not in resp.headers  # evaluated only after the range check


@pytest.mark.parametrize(
    ("value", "echoed"),
    [
        ("true", True),
        ("True", True),
        ("1", True),
        ("YES", True),
        ("on", True),
        ("t", True),
        ("y", True),
        ("false", False),
        ("0", False),
        ("maybe", False),
        ("", False),
    ],
)
def test_experimental_header_is_lenient_and_echoed_only_when_true(
    shim: ShimServer, value: str, echoed: bool
) -> None:
    with shim.client(
        "member", version="2.30", **{"X-OpenStack-Manila-API-Experimental": value}
    ) as c:
        resp = c.get("/v2/demo/shares")
    assert resp.status_code == 200  # never an error, whatever the word
    assert (resp.headers.get(EXPERIMENTAL) == "True") is echoed


def test_authentication_comes_before_version_checks(shim: ShimServer) -> None:
    with shim.client("no-such-token", version="latest") as c:
        resp = c.get("/v2/demo/shares")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == 401


def test_generic_openstack_api_version_header_is_not_required(shim: ShimServer) -> None:
    with shim.client(
        "member", version=None, **{"OpenStack-API-Version": "shared-file-system 2.98"}
    ) as c:
        resp = c.get("/v2/demo/shares/detail")
    assert resp.status_code == 200
    assert resp.headers[VERSION] == "2.0"


def test_every_response_carries_a_request_id(shim: ShimServer) -> None:
    with shim.client("member") as c:
        ok, missing = c.get("/v2/demo/shares"), c.get("/v2/demo/shares/nope")
    root = httpx.get(shim.url + "/")
    ids = [r.headers["x-openstack-request-id"] for r in (ok, missing, root)]
    assert all(i.startswith("req-") for i in ids) and len(set(ids)) == 3
    assert ok.headers["x-compute-request-id"] == ids[0]

"""Bad input on every route of the shim (hypothesis, over real HTTP): never a 5xx, and every
4xx carries the body the contract names: a Manila fault `{"<faultName>": {"code", "message"}}`,
Keystone's `{"error": {...}}` for a 401, or the plain-text 404 of a routing miss.

The shim publishes no OpenAPI document (Manila has none; `openapi_url=None`), so the routes
are listed here from api_shim/routes and fuzzed with hypothesis rather than schemathesis.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_shim.faults import fault_name
from tests.kit.kill_stack import OTHER_PROJECT, PROJECT, Stack
from tests.kit.reliability import record

ROUTES: list[tuple[str, str]] = [
    ("GET", "/v2"),
    ("GET", "/v2/{p}"),
    ("GET", "/v2/{p}/shares"),
    ("GET", "/v2/{p}/shares/detail"),
    ("POST", "/v2/{p}/shares"),
    ("GET", "/v2/{p}/shares/{id}"),
    ("DELETE", "/v2/{p}/shares/{id}"),
    ("PUT", "/v2/{p}/shares/{id}"),
    ("GET", "/v2/{p}/shares/{id}/export_locations"),
    ("GET", "/v2/{p}/shares/{id}/export_locations/{id2}"),
    ("POST", "/v2/{p}/shares/{id}/action"),
    ("GET", "/v2/{p}/shares/{id}/migration-progress"),
    ("GET", "/v2/{p}/snapshots"),
    ("GET", "/v2/{p}/snapshots/detail"),
    ("POST", "/v2/{p}/snapshots"),
    ("GET", "/v2/{p}/snapshots/{id}"),
    ("DELETE", "/v2/{p}/snapshots/{id}"),
    ("GET", "/v2/{p}/types"),
    ("GET", "/v2/{p}/types/default"),
    ("GET", "/v2/{p}/types/{id}"),
    ("POST", "/v2/{p}/types"),
    ("GET", "/v2/{p}/share-networks"),
    ("GET", "/v2/{p}/share-networks/{id}"),
    ("POST", "/v2/{p}/share-networks"),
    ("GET", "/v2/{p}/scheduler-stats/pools"),
    ("GET", "/v2/{p}/scheduler-stats/pools/detail"),
    ("GET", "/v2/{p}/share-access-rules"),
    ("GET", "/v2/{p}/share-access-rules/{id}"),
    ("GET", "/v2/shares"),
    ("POST", "/v2/shares/{id}/action"),
]
ACTION_NAMES = [
    "migration_start",
    "migration_complete",
    "migration_cancel",
    "migration_get_progress",
    "reset_task_state",
    "reset_status",
    "os-reset_status",
    "allow_access",
    "os-allow_access",
    "deny_access",
    "os-deny_access",
    "access_list",
    "os-access_list",
]
RESOURCE_KEYS = ["share", "snapshot", "share_type", "share_network", "access"]

_text = st.text(max_size=40)
# What an HTTP/1.1 server lets through to the app (h11 answers DEL and controls itself).
_header_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E)
    | st.characters(min_codepoint=0xA0, max_codepoint=0xFF),
    min_size=1,
    max_size=30,
)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
# Bodies shaped like the real ones, with wrong members, and plain junk.
_bodies = (
    st.builds(lambda k, v: {k: v}, st.sampled_from(ACTION_NAMES + RESOURCE_KEYS), _json)
    | st.builds(
        lambda k, v: {k: v},
        st.sampled_from(RESOURCE_KEYS),
        st.dictionaries(
            st.sampled_from(
                [
                    "share_proto",
                    "size",
                    "name",
                    "share_id",
                    "share_type",
                    "metadata",
                    "share_network_id",
                    "extra_specs",
                    "is_public",
                    "access_to",
                    "host",
                    "snapshot_id",
                    "description",
                    "availability_zone",
                ]
            ),
            _json,
            max_size=6,
        ),
    )
    | _json
)
_ids = st.sampled_from(["SHARE", "..", "../..", ".", "%2e%2e", "\u00e9", "x" * 300, ""]) | _text


@pytest.fixture(scope="module")
def target(idle_shim: Stack) -> tuple[Stack, str]:
    with idle_shim.client("admin") as api:
        resp = api.post("/shares", json={"share": {"share_proto": "NFS", "size": 1}})
        assert resp.status_code == 200, resp.text
        return idle_shim, str(resp.json()["share"]["id"])


def check_answer(resp: httpx.Response) -> None:
    """No 5xx; a 4xx has the body the contract names for it."""
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    if resp.status_code < 400:
        return
    if resp.status_code == 404 and resp.headers.get("content-type", "").startswith("text/plain"):
        assert resp.text.startswith("404 Not Found")
        return
    body = resp.json()
    assert isinstance(body, dict) and len(body) == 1, body
    ((name, fault),) = body.items()
    expected = "error" if resp.status_code == 401 else fault_name(resp.status_code)
    assert name == expected, body
    assert fault["code"] == resp.status_code and isinstance(fault["message"], str), body
    assert fault["message"].strip(), body


_runs: list[int] = []


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=False,
)
@given(
    route=st.sampled_from(ROUTES),
    project=st.sampled_from([PROJECT, OTHER_PROJECT, "-bad", "x" * 70]) | _text,
    share=_ids,
    other_id=_ids,
    token=st.sampled_from(["admin", "member", "other_member", None, "forged"]),
    version=st.none()
    | st.sampled_from(["2.0", "2.6", "2.22", "2.29", "2.59", "2.98", "2.99", "3.0", "2.100"])
    | _header_text,
    experimental=st.none() | st.sampled_from(["true", "True", "1"]) | _header_text,
    content_type=st.none()
    | st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"])
    | _header_text,
    body=st.none() | _bodies.map(lambda b: json.dumps(b).encode()) | st.binary(max_size=64),
    query=st.dictionaries(
        st.sampled_from(
            [
                "limit",
                "offset",
                "all_tenants",
                "is_public",
                "name",
                "pool",
                "host",
                "backend",
                "share_id",
                "is_soft_deleted",
                "status",
            ]
        ),
        _text,
        max_size=3,
    ),
)
def test_no_input_reaches_a_5xx_and_every_4xx_is_a_fault(
    target: tuple[Stack, str],
    route: tuple[str, str],
    project: str,
    share: str,
    other_id: str,
    token: str | None,
    version: str | None,
    experimental: str | None,
    content_type: str | None,
    body: bytes | None,
    query: dict[str, str],
) -> None:
    stack, share_id = target
    method, template = route
    path = template.format(
        p=quote(project, safe=""),
        id=quote(share_id if share == "SHARE" else share, safe=""),
        id2=quote(other_id, safe=""),
    )
    headers: dict[str, Any] = {}
    if token is not None:
        headers["X-Auth-Token"] = stack.tokens.get(token, "forged-token")
    for name, value in (
        ("X-OpenStack-Manila-API-Version", version),
        ("X-OpenStack-Manila-API-Experimental", experimental),
        ("Content-Type", content_type),
    ):
        if value is not None:
            headers[name] = value.strip().encode("latin-1") or b"x"
    resp = httpx.request(
        method,
        stack.shim_url + path,
        headers=headers,
        params=query,
        content=body if method in ("POST", "PUT") else None,
        timeout=30,
    )
    _runs.append(resp.status_code)
    check_answer(resp)


def test_the_fuzz_ran_and_was_recorded(target: tuple[Stack, str]) -> None:
    """The table row for the fuzz run (after it): how many requests, how they were answered."""
    if not _runs:
        pytest.skip("the fuzz test did not run in this session")
    classes = sorted({f"{code // 100}xx" for code in _runs})
    record(
        "bad input: hypothesis fuzz over every route",
        f"{len(_runs)} requests " + "/".join(classes),
        0,
    )
    assert all(code < 500 for code in _runs)
    # A fuzz that never got past authentication, or never failed, would prove little.
    assert any(200 <= c < 300 for c in _runs) and any(400 <= c < 500 for c in _runs)

"""Progress (§8) by microversion, the admin repairs (§12.4) as codes, no 5xx at all. The
numbers and the repairs themselves are checked on the database (tests/storage)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kit.manila_api import action, assert_fault, share_view
from tests.kit.shim_server import ShimServer

MakeShare = Callable[..., str]
SetState = Callable[..., str]


@pytest.mark.parametrize(
    ("version", "details"), [("2.22", False), ("2.58", False), ("2.59", True), ("2.95", True)]
)
def test_details_appear_at_259(
    shim: ShimServer, make_share: MakeShare, set_state: SetState, version: str, details: bool
) -> None:
    share = make_share()
    set_state(share, "data_copying_in_progress", bytes_planned=100, files_planned=0)
    resp = action(shim, share, {"migration_get_progress": None}, version=version, experimental=True)
    assert resp.status_code == 200
    body = resp.json()
    expected = {"total_progress", "task_state"} | ({"details"} if details else set())
    assert set(body) == expected
    if details:
        assert body["details"]["bytes_total"] == 100


# --- reset_task_state / reset_status ---------------------------------------------------------


@pytest.mark.parametrize("value", [None, "migration_error", "data_copying_completed"])
def test_reset_task_state(shim: ShimServer, make_share: MakeShare, value: str | None) -> None:
    share = make_share()
    resp = action(shim, share, {"reset_task_state": {"task_state": value}})
    assert resp.status_code == 202 and resp.content == b""
    assert share_view(shim, share)["task_state"] == value


@pytest.mark.parametrize(
    "body",
    [
        {"reset_task_state": {"task_state": "bogus"}},
        {"reset_task_state": {"task_state": "migration_driver_starting"}},
        {"reset_task_state": {"task_state": "migration_cancel_in_progress"}},
        {"reset_task_state": {"task_state": 5}},
        {"reset_task_state": {}},
        {"reset_task_state": None},
        {"reset_status": {"status": "bogus"}},
        {"reset_status": {"status": ["available"]}},
        {"reset_status": {}},
    ],
)
def test_invalid_resets_are_400(shim: ShimServer, make_share: MakeShare, body: object) -> None:
    assert_fault(action(shim, make_share(), body), 400)


def test_reset_status_versions(shim: ShimServer, make_share: MakeShare) -> None:
    share = make_share()
    legacy = {"os-reset_status": {"status": "error"}}
    assert action(shim, share, legacy, version="2.6").status_code == 202
    assert_fault(action(shim, share, legacy, version="2.7"), 404)
    assert_fault(action(shim, share, {"reset_status": {"status": "available"}}, version="2.6"), 404)
    assert action(shim, share, {"reset_status": {"status": "available"}}).status_code == 202
    assert_fault(action(shim, share, {"reset_status": {"status": "error"}}, token="member"), 403)


# --- nothing a client sends reaches a 5xx ----------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
_actions = st.sampled_from(
    [
        "migration_start",
        "migration_complete",
        "migration_cancel",
        "migration_get_progress",
        "reset_task_state",
        "reset_status",
        "os-reset_status",
        "allow_access",
        "deny_access",
        "access_list",
        "os-access_list",
        "bogus",
    ]
)
_start_fields = st.fixed_dictionaries(
    {},
    optional={
        k: _json | st.sampled_from(["True", "no", "sharemig@localfs#nosuchpool", "x@y#z"])
        for k in (
            "host",
            "preserve_metadata",
            "preserve_snapshots",
            "writable",
            "nondisruptive",
            "force_host_assisted_migration",
            "new_share_network_id",
            "new_share_type_id",
        )
    },
)


@pytest.fixture(scope="module")
def fuzz_client(shim: ShimServer) -> Iterator[tuple[httpx.Client, str]]:
    with shim.client("admin") as c:
        resp = c.post("/v2/demo/shares", json={"share": {"share_proto": "NFS", "size": 1}})
        yield c, str(resp.json()["share"]["id"])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    name=_actions,
    value=_json | _start_fields,
    version=st.sampled_from(["2.0", "2.6", "2.22", "2.29", "2.59", "2.96", "2.98", "2.99"]),
    experimental=st.booleans(),
    raw=st.none() | st.binary(max_size=16),
)
def test_no_bad_input_reaches_a_5xx(
    fuzz_client: tuple[httpx.Client, str],
    name: str,
    value: object,
    version: str,
    experimental: bool,
    raw: bytes | None,
) -> None:
    client, share = fuzz_client
    headers = {"Content-Type": "application/json", "X-OpenStack-Manila-API-Version": version}
    if experimental:
        headers["X-OpenStack-Manila-API-Experimental"] = "true"
    content = raw if raw is not None else json.dumps({name: value}).encode()
    for share_id in (share, "no-such-share"):
        resp = client.post(f"/v2/demo/shares/{share_id}/action", content=content, headers=headers)
        assert resp.status_code < 500, (resp.status_code, resp.text)
        # Every refusal is a fault body with a message.
        if resp.status_code >= 400:
            ((_, fault),) = resp.json().items()
            assert fault["code"] == resp.status_code and fault["message"]

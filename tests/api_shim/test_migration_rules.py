"""The contract's rules for the migration actions, walked at the version boundaries it names.

Each test asserts the status and the fault name; `test_no_bad_input_reaches_a_5xx` throws
random bodies at the action endpoint. The shim here has no Prefect behind it (a dead
PREFECT_API_URL), so a start that passes every check ends in a 503 (§ control).
"""

from __future__ import annotations

import pytest

from tests.kit.manila_api import VALID_START, action, assert_fault, progress_get, start_body
from tests.kit.shim_server import ShimServer

VERSIONS = [
    None,
    "2.21",
    "2.22",
    "2.28",
    "2.29",
    "2.58",
    "2.59",
    "2.95",
    "2.96",
    "2.97",
    "2.98",
    "2.99",
]


def _served(op: str, version: str | None, exp: bool) -> bool:
    if version is None:
        return False
    minor = int(version.split(".")[1])
    if op == "progress_get":
        return minor >= 98
    first = 29 if op == "start" else 22
    last = 97 if op == "progress" else 99
    if minor > last or minor < first:
        return False
    return minor >= 96 or exp


# What each operation answers, once served, on a share that never migrated.
ON_IDLE_SHARE = {
    "start": ({"migration_start": {}}, 400),  # body check: 'host' is required
    "complete": ({"migration_complete": None}, 400),
    "cancel": ({"migration_cancel": None}, 400),
    "progress": ({"migration_get_progress": None}, 400),
    "reset_task_state": ({"reset_task_state": {"task_state": None}}, 202),
}


@pytest.fixture(scope="module")
def idle_share(shim: ShimServer) -> str:
    with shim.client("admin") as c:
        resp = c.post("/v2/demo/shares", json={"share": {"share_proto": "NFS", "size": 1}})
    return str(resp.json()["share"]["id"])


@pytest.mark.parametrize("exp", [False, True])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("op", [*ON_IDLE_SHARE, "progress_get"])
def test_version_matrix(
    shim: ShimServer, idle_share: str, op: str, version: str | None, exp: bool
) -> None:
    if op == "progress_get":
        headers = {"X-OpenStack-Manila-API-Experimental": "true"} if exp else {}
        with shim.client("admin", version=version, **headers) as c:
            resp = c.get(f"/v2/demo/shares/{idle_share}/migration-progress")
        expected = 400
    else:
        body, expected = ON_IDLE_SHARE[op]
        resp = action(shim, idle_share, body, version=version, experimental=exp)
    if not _served(op if op != "reset_task_state" else "complete", version, exp):
        assert_fault(resp, 404, says="could not be found")
        return
    if expected == 202:
        assert resp.status_code == 202 and resp.content == b""
    else:
        assert_fault(resp, expected)
    if exp and version is not None:
        assert resp.headers["x-openstack-manila-api-experimental"] == "True"


def test_version_miss_precedes_authorisation_and_lookup(shim: ShimServer) -> None:
    # A member at an unsupported version gets the 404, not the 403 (§11).
    resp = action(
        shim, "no-such-share", {"migration_complete": None}, token="member", version="2.30"
    )
    assert_fault(resp, 404)


# --- §11: admin only, before any lookup ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        start_body(),
        {"migration_start": {"host": 1}},
        {"migration_complete": None},
        {"migration_cancel": None},
        {"migration_get_progress": None},
        {"reset_task_state": {"task_state": None}},
    ],
)
@pytest.mark.parametrize("version", ["2.96", "2.95"])
def test_members_get_403_before_body_check_and_share_lookup(
    shim: ShimServer, idle_share: str, body: dict[str, object], version: str
) -> None:
    for share_id in (idle_share, "no-such-share"):
        resp = action(shim, share_id, body, token="member", version=version, experimental=True)
        assert_fault(resp, 403, says="Access was denied")
    assert_fault(progress_get(shim, "no-such-share", token="member"), 403)


def test_another_projects_share_is_not_found_for_its_members(
    shim: ShimServer, idle_share: str
) -> None:
    with shim.client("other_member") as c:
        assert c.get(f"/v2/other/shares/{idle_share}").status_code == 404
        assert c.get("/v2/other/shares/detail").json()["shares"] == []


# --- §4: framing of the action endpoint ------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type", "says"),
    [
        (b'{"migration_complete": null}', None, "There is no such action: None"),
        (b'{"migration_complete": null}', "text/plain", "There is no such action: None"),
        (b"{not json", "application/json", "Malformed request body"),
        (b"{}", "application/json", "Malformed request body"),
        (
            b'{"migration_complete": null, "migration_cancel": null}',
            "application/json",
            "Malformed",
        ),
        (b"[]", "application/json", "Malformed request body"),
        (b"[1, 2]", "application/json", "Malformed request body"),
        (b'"ab"', "application/json", "Malformed request body"),
        # The reference answers 404 for these (a quirk, §4); the shim says what is wrong.
        (b"[1]", "application/json", "Malformed request body"),
        (b'"a"', "application/json", "Malformed request body"),
        (b"1", "application/json", "Malformed request body"),
        (b"true", "application/json", "Malformed request body"),
        (b"null", "application/json", "Malformed request body"),
        (
            b'{"migrate_share": {"host": "x"}}',
            "application/json",
            "There is no such action: migrate_share",
        ),
        (
            b'{"Migration_Complete": null}',
            "application/json",
            "There is no such action: Migration_Complete",
        ),
    ],
)
def test_action_framing(
    shim: ShimServer, idle_share: str, content: bytes, content_type: str | None, says: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    with shim.client("admin") as c:
        resp = c.post(f"/v2/other/shares/{idle_share}/action", content=content, headers=headers)
    # The URL names another project too: framing is decided first (§4 order).
    assert_fault(resp, 400, says=says)


def test_url_project_must_match_the_token(shim: ShimServer, idle_share: str) -> None:
    resp = action(shim, idle_share, {"migration_complete": None}, project="other", version="2.30")
    assert_fault(resp, 400, says="Malformed request url")  # before the version miss
    with shim.client("admin") as c:
        assert_fault(c.get(f"/v2/other/shares/{idle_share}"), 400, says="Malformed request url")
        # Without the project segment the same request works.
        assert c.get(f"/v2/shares/{idle_share}").status_code == 200
        assert (
            c.post(
                f"/v2/shares/{idle_share}/action", json={"migration_get_progress": None}
            ).status_code
            == 404
        )


@pytest.mark.parametrize("value", [None, {}, {"share_id": "x"}, "now", 1, [1, 2]])
def test_complete_cancel_progress_accept_any_value(
    shim: ShimServer, idle_share: str, value: object
) -> None:
    for name in ("migration_complete", "migration_cancel"):
        assert_fault(
            action(shim, idle_share, {name: value}), 400, says="no migration being performed"
        )
    resp = action(shim, idle_share, {"migration_get_progress": value}, version="2.97")
    assert_fault(resp, 400, says="no migration being performed")


# --- §5.1: the migration_start body ----------------------------------------------------------

TRUE_FORMS = [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t"]
FALSE_FORMS = [
    False,
    "False",
    "FALSE",
    "false",
    "0",
    "OFF",
    "Off",
    "off",
    "NO",
    "No",
    "no",
    "n",
    "f",
]
REFUSED_FORMS = [0, 1, None, "Y", "T", "tRuE", " true", "true ", "", [], {}, 1.0, "2"]


FLAGS = (
    "preserve_metadata",
    "preserve_snapshots",
    "writable",
    "nondisruptive",
    "force_host_assisted_migration",
)


@pytest.mark.parametrize("value", TRUE_FORMS + FALSE_FORMS)
def test_boolean_forms_are_accepted(shim: ShimServer, value: object) -> None:
    for flag in FLAGS:
        # An accepted body moves on to the share lookup: 404 for an unknown share.
        resp = action(shim, "no-such-share", start_body(**{flag: value}))
        assert_fault(resp, 404, says="no-such-share")


@pytest.mark.parametrize("value", REFUSED_FORMS)
def test_other_boolean_forms_are_400(shim: ShimServer, value: object) -> None:
    for flag in FLAGS:
        resp = action(shim, "no-such-share", start_body(**{flag: value}))
        assert_fault(resp, 400, says=f"Invalid input for field/attribute {flag}")


@pytest.mark.parametrize(
    "key", ["host", "preserve_metadata", "preserve_snapshots", "writable", "nondisruptive"]
)
def test_required_keys(shim: ShimServer, key: str) -> None:
    body = start_body()
    del body["migration_start"][key]  # type: ignore[attr-defined]
    assert_fault(action(shim, "no-such-share", body), 400, says=f"'{key}' is a required property")


@pytest.mark.parametrize(
    "body",
    [
        start_body(share_id="ignored", anything={"at": "all"}),  # unknown inner keys are ignored
        start_body(new_share_network_id="", new_share_type_id=""),  # "" means keep current
        {
            "migration_start": {
                k: v for k, v in VALID_START.items() if not k.startswith(("new_", "force"))
            }
        },
        start_body(host=""),  # any string passes the schema
    ],
)
def test_bodies_the_schema_accepts(shim: ShimServer, body: dict[str, object]) -> None:
    assert_fault(action(shim, "no-such-share", body), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"migration_start": None},
        {"migration_start": "x"},
        {"migration_start": []},
        start_body(host=None),
        start_body(host=5),
        start_body(new_share_network_id=7),
        start_body(new_share_type_id=["a"]),
    ],
)
def test_bodies_the_schema_refuses(shim: ShimServer, body: dict[str, object]) -> None:
    assert_fault(action(shim, "no-such-share", body), 400, says="Invalid input for field/attribute")


def test_start_below_229_is_404_even_with_experimental(shim: ShimServer, idle_share: str) -> None:
    assert_fault(action(shim, idle_share, start_body(), version="2.28", experimental=True), 404)

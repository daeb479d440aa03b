"""Project isolation across every endpoint, and tokens over real HTTP.

A member of project `other` tries every route of the shim on project `rel`'s share, snapshot,
access rule, export location and share network: nothing is shown, changed or listed (404, or
403 where the route is an admin's). Any token in a URL naming another project is refused.
Tokens, right or wrong, never appear in a response or in the shim's debug-level log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kit.kill_stack import OTHER_PROJECT, POOL_A, PROJECT, Stack
from tests.kit.reliability import record

ACTIONS: list[tuple[str, object]] = [
    (
        "migration_start",
        {
            "host": "kill@localfs#b",
            **dict.fromkeys(
                ("preserve_metadata", "preserve_snapshots", "writable", "nondisruptive"), False
            ),
        },
    ),
    ("migration_complete", None),
    ("migration_cancel", None),
    ("migration_get_progress", None),
    ("reset_task_state", {"task_state": None}),
    ("reset_status", {"status": "error"}),
    ("allow_access", {"access_type": "ip", "access_to": "10.9.9.9", "access_level": "rw"}),
    ("deny_access", {"access_id": "RULE"}),
    ("access_list", None),
]
LEGACY_ACTIONS: list[tuple[str, object]] = [
    ("os-reset_status", {"status": "error"}),
    ("os-allow_access", {"access_type": "ip", "access_to": "10.9.9.8"}),
    ("os-deny_access", {"access_id": "RULE"}),
    ("os-access_list", None),
]


@pytest.fixture(scope="module")
def owned(idle_shim: Stack) -> dict[str, str]:
    """Project `rel`'s resources, made by its admin through the API."""
    with idle_shim.client("admin") as api:
        share = api.post("/shares", json={"share": {"share_proto": "NFS", "size": 1}})
        assert share.status_code == 200, share.text
        share_id = share.json()["share"]["id"]
        snap = api.post("/snapshots", json={"snapshot": {"share_id": share_id}})
        assert snap.status_code == 202, snap.text
        rule = api.post(
            f"/shares/{share_id}/action",
            json={"allow_access": {"access_type": "ip", "access_to": "10.0.0.1"}},
        )
        assert rule.status_code == 200, rule.text
        net = api.post("/share-networks", json={"share_network": {"name": "rel-net"}})
        assert net.status_code == 200, net.text
        exports = api.get(f"/shares/{share_id}/export_locations").json()["export_locations"]
        return {
            "share": share_id,
            "snapshot": snap.json()["snapshot"]["id"],
            "rule": rule.json()["access"]["id"],
            "network": net.json()["share_network"]["id"],
            "export": exports[0]["id"],
        }


def _requests(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path under /v2/<project>, httpx kwargs) for every route that takes an id."""
    s, snap, rule, net, exp = (ids[k] for k in ("share", "snapshot", "rule", "network", "export"))
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/shares/{s}", {}),
        ("DELETE", f"/shares/{s}", {}),
        ("GET", f"/shares/{s}/export_locations", {}),
        ("GET", f"/shares/{s}/export_locations/{exp}", {}),
        ("GET", f"/shares/{s}/migration-progress", {}),
        ("GET", f"/snapshots/{snap}", {}),
        ("DELETE", f"/snapshots/{snap}", {}),
        ("POST", "/snapshots", {"json": {"snapshot": {"share_id": s}}}),
        ("GET", f"/share-networks/{net}", {}),
        (
            "POST",
            "/shares",
            {"json": {"share": {"share_proto": "NFS", "size": 1, "share_network_id": net}}},
        ),
        ("GET", "/share-access-rules", {"params": {"share_id": s}}),
        ("GET", f"/share-access-rules/{rule}", {}),
    ]
    for name, value in ACTIONS:
        body = {name: {"access_id": rule} if name == "deny_access" else value}
        calls.append(("POST", f"/shares/{s}/action", {"json": body}))
    return calls


def _state(stack: Stack, ids: dict[str, str]) -> dict[str, Any]:
    with stack.client("admin") as api:
        share = api.get(f"/shares/{ids['share']}").json()["share"]
        return {
            "share": (share["status"], share["task_state"], share["host"]),
            "snapshot": api.get(f"/snapshots/{ids['snapshot']}").status_code,
            "rules": api.get("/share-access-rules", params={"share_id": ids["share"]}).json(),
            "network": api.get(f"/share-networks/{ids['network']}").status_code,
        }


def test_another_projects_member_reaches_nothing_on_any_endpoint(
    idle_shim: Stack, owned: dict[str, str]
) -> None:
    before = _state(idle_shim, owned)
    leaks = []
    with idle_shim.client("other_member", project=OTHER_PROJECT) as api:
        calls = _requests(owned)
        for method, path, kwargs in calls:
            resp = api.request(method, path, **kwargs)
            asked = path + repr(kwargs)
            # Ids the caller did not send must not come back (echoing its own is fine).
            shown = [v for v in owned.values() if v in resp.text and v not in asked]
            # 404: not found for this project; 403: an admin's route, refused before lookup.
            if resp.status_code not in (403, 404) or shown:
                leaks.append((method, path, resp.status_code, resp.text[:200]))
        for listing in (
            "/shares",
            "/shares/detail",
            "/snapshots",
            "/snapshots/detail",
            "/share-networks",
            "/share-networks/detail",
        ):
            for params in ({}, {"all_tenants": "1"}, {"is_public": "true"}):
                resp = api.get(listing, params=params)
                if resp.status_code != 200 or any(v in resp.text for v in owned.values()):
                    leaks.append(("GET", listing, resp.status_code, resp.text[:200]))
    after = _state(idle_shim, owned)
    record("security: another project's member on every endpoint", f"{len(calls)} refused", 0)
    assert not leaks, leaks
    assert after == before


def test_a_url_naming_another_project_is_refused_on_every_endpoint(
    idle_shim: Stack, owned: dict[str, str]
) -> None:
    before = _state(idle_shim, owned)
    wrong = []
    # `rel`'s own admin, with `other` in the URL: the URL must match the token (400), and
    # nothing is looked up or changed first.
    with idle_shim.client("admin", project=OTHER_PROJECT) as api:
        calls = [*_requests(owned), ("GET", "/shares", {}), ("GET", "/types", {})]
        for method, path, kwargs in calls:
            resp = api.request(method, path, **kwargs)
            if resp.status_code != 400 or "does not match" not in resp.text:
                wrong.append((method, path, resp.status_code, resp.text[:200]))
    record("security: URL project differs from the token's", f"{len(calls)} refused", 0)
    assert not wrong, wrong
    assert _state(idle_shim, owned) == before


def test_legacy_actions_are_isolated_too(idle_shim: Stack, owned: dict[str, str]) -> None:
    with httpx.Client(
        base_url=f"{idle_shim.shim_url}/v2/{OTHER_PROJECT}",
        headers={
            "X-Auth-Token": idle_shim.tokens["other_member"],
            "X-OpenStack-Manila-API-Version": "2.6",
        },
    ) as api:
        for name, value in LEGACY_ACTIONS:
            body = {name: {"access_id": owned["rule"]} if name == "os-deny_access" else value}
            resp = api.post(f"/shares/{owned['share']}/action", json=body)
            assert resp.status_code in (403, 404), (name, resp.status_code, resp.text)


def test_tokens_over_http_never_echoed_or_logged(idle_shim: Stack, owned: dict[str, str]) -> None:
    """Good, wrong, truncated and padded tokens on every kind of answer, debug logging on."""
    secrets = list(idle_shim.tokens.values())
    probes = [
        *secrets,
        secrets[0][:-1],
        secrets[0] + "x",
        secrets[1][::-1],
        secrets[2].swapcase(),
    ]
    answers = []
    for token in probes:
        for method, path in (
            ("GET", f"/v2/{PROJECT}/shares"),
            ("GET", f"/v2/{PROJECT}/shares/{owned['share']}"),
            ("GET", f"/v2/{PROJECT}/shares/no-such-share"),
            ("POST", f"/v2/{PROJECT}/shares/{owned['share']}/action"),
            ("GET", "/v2/nope/nothing/here"),
        ):
            resp = httpx.request(
                method,
                idle_shim.shim_url + path,
                headers={"X-Auth-Token": token, "Content-Type": "application/json"},
                content=b'{"migration_get_progress": null}' if method == "POST" else None,
            )
            answers.append(resp)
            assert resp.status_code < 500
            assert token.strip() not in resp.text and token.strip() not in str(resp.headers)
    # Only the exact tokens authenticate; near misses are 401.
    statuses = [a.status_code for a in answers]
    assert statuses.count(401) == 4 * 5, statuses
    log = (idle_shim.root / "shim.log").read_text(errors="replace")
    for token in probes:
        assert token.strip() not in log
    tokens_file = (idle_shim.home / "tokens.yaml").read_text()
    assert not any(t in tokens_file for t in secrets)
    record("security: tokens over HTTP (echo, logs, near misses)", "never shown; 401", 0)


def test_pool_filters_and_share_ids_never_reach_the_filesystem(
    idle_shim: Stack, owned: dict[str, str], tmp_path: Path
) -> None:
    """Ids and names that look like paths stay labels: no file appears outside the pools."""
    outside_before = _files_outside_pools(idle_shim)
    hostile = ["..", "../../etc/passwd", "%2e%2e%2f%2e%2e", "/etc", "a/../../b", "~root", "."]
    with idle_shim.client("admin") as api:
        for value in hostile:
            api.post(
                "/shares",
                json={
                    "share": {
                        "share_proto": "NFS",
                        "size": 1,
                        "name": value,
                        "description": value,
                        "metadata": {value: value},
                    }
                },
            )
            api.post("/snapshots", json={"snapshot": {"share_id": owned["share"], "name": value}})
            api.get(f"/shares/{value}")
            api.delete(f"/snapshots/{value}")
            api.post(
                f"/shares/{owned['share']}/action",
                json={
                    "migration_start": {
                        "host": f"kill@localfs#{value}",
                        **dict.fromkeys(
                            (
                                "preserve_metadata",
                                "preserve_snapshots",
                                "writable",
                                "nondisruptive",
                            ),
                            False,
                        ),
                    }
                },
            )
            api.get("/scheduler-stats/pools", params={"pool": value, "host": value})
    pool_root = idle_shim.pool_dir(POOL_A).parent.resolve()
    for path in pool_root.rglob("*"):
        assert path.resolve().is_relative_to(pool_root), path
    assert _files_outside_pools(idle_shim) == outside_before
    record("security: path-like ids and names over HTTP", "contained", 0)


def _files_outside_pools(stack: Stack) -> set[str]:
    """Files under the data dir's parent, other than pool contents, the DB and logs."""
    found = set()
    for path in stack.root.rglob("*"):
        rel = path.relative_to(stack.root).as_posix()
        if rel.startswith("home/pools/") or rel.endswith((".log", ".db", "-journal", "-wal")):
            continue
        found.add(rel)
    found.update(p.name for p in Path("/").iterdir())
    return found

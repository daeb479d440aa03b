"""Tokens without Keystone: the tokens file, `sharemig token create`, 401/403/404 outcomes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from storage.errors import InvalidInputError
from storage.tokens import TokenStore, create_token, lookup_token
from tests.kit.shim_server import ShimServer
from tests.kit.waiting import wait_for

SHAREMIG = str(Path(sys.executable).with_name("sharemig"))


def test_the_file_keeps_digests_only(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    admin, member = create_token("p1", admin=True, path=path), create_token("p1", path=path)
    text = path.read_text()
    assert admin not in text and member not in text
    assert os.stat(path).st_mode & 0o777 == 0o600
    found = lookup_token(admin, path)
    assert found is not None and found.project_id == "p1" and found.is_admin
    assert lookup_token(member, path) is not None and not lookup_token(member, path).is_admin  # type: ignore[union-attr]
    for wrong in (None, "", admin[:-1], admin + "x", "p1"):
        assert lookup_token(wrong, path) is None


def test_no_token_reads_as_a_command_line_option(tmp_path: Path) -> None:
    """Operators paste tokens into `openstack --os-token T` and `curl -H`; one starting with
    '-' is taken for an option (CI's `openstack` run failed on one)."""
    path = tmp_path / "tokens.yaml"
    tokens = [create_token("p1", path=path) for _ in range(300)]
    assert not [t for t in tokens if t.startswith("-")]
    assert all(lookup_token(t, path) is not None for t in tokens[:3])


def test_the_store_rereads_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    store = TokenStore(path)
    assert store.lookup("anything") is None  # no file yet: nobody gets in
    token = create_token("p2", path=path)
    assert store.lookup(token) is not None


@pytest.mark.parametrize("project", ["", "-x", "a/b", "a b", "x" * 65, "é"])
def test_project_ids_are_checked(tmp_path: Path, project: str) -> None:
    with pytest.raises(InvalidInputError, match="project id"):
        create_token(project, path=tmp_path / "tokens.yaml")


def test_cli_prints_only_the_token(tmp_path: Path) -> None:
    env = {**os.environ, "SHAREMIG_HOME": str(tmp_path)}
    done = subprocess.run(
        [SHAREMIG, "token", "create", "--project", "cli-proj", "--admin"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    token = done.stdout.strip()
    assert "\n" not in token and len(token) >= 40
    info = lookup_token(token, tmp_path / "tokens.yaml")
    assert info is not None and (info.project_id, info.is_admin) == ("cli-proj", True)
    bad = subprocess.run(
        [SHAREMIG, "token", "create", "--project", "no/slash"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and "project id" in bad.stderr


def test_missing_or_unknown_token_is_401_keystone_style(shim: ShimServer) -> None:
    for headers in ({}, {"X-Auth-Token": "not-a-token"}, {"X-Auth-Token": ""}):
        resp = httpx.get(shim.url + "/v2/demo/shares", headers=headers)
        assert resp.status_code == 401
        err = resp.json()["error"]
        assert err["code"] == 401 and "sharemig token create" in err["message"]


def test_a_token_created_while_the_shim_runs_works_at_once(shim: ShimServer) -> None:
    token = create_token("late", path=shim.home / "tokens.yaml")
    with shim.client(token) as c:
        wait_for(lambda: c.get("/v2/late/shares").status_code == 200, timeout=10, what="new token")
        assert c.get("/v2/late/shares").json() == {"shares": []}


def test_admins_see_other_projects_shares_members_do_not(
    shim: ShimServer, make_share: object
) -> None:
    share = make_share()  # type: ignore[operator]
    with shim.client("other_admin") as c:
        assert c.get(f"/v2/other/shares/{share}").status_code == 200  # as in Manila
        assert c.get("/v2/other/shares").json()["shares"] == []  # own project unless all_tenants
        listed = c.get("/v2/other/shares", params={"all_tenants": "1"}).json()["shares"]
        assert share in [s["id"] for s in listed]
    with shim.client("other_member") as c:
        assert c.get(f"/v2/other/shares/{share}").status_code == 404
        assert c.delete(f"/v2/other/shares/{share}").status_code == 404
        listed = c.get("/v2/other/shares", params={"all_tenants": "1"}).json()["shares"]
        assert share not in [s["id"] for s in listed]  # all_tenants is an admin's query

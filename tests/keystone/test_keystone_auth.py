"""The shim behind a real Keystone: real clients, real tokens, Manila's policy answers.

Keystone (from PyPI, own venv, SQLite), the shim (`sharemig api`, SHAREMIG_AUTH=keystone,
keystonemiddleware), a Prefect server and worker all run for real; nothing is faked.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.kit.keystone import BIN, KeystoneShim
from tests.kit.manila_api import OSC_NO_GUARANTEES
from tests.kit.readme import yaml_block
from tests.kit.waiting import wait_for

POOL_A, POOL_B = "sharemig@localfs#pool-a", "sharemig@localfs#pool-b"
PHASE1_DONE = ("migration_driver_phase1_done", "data_copying_completed")
ACTIONS = {
    "migration_start": {
        "host": POOL_B,
        "preserve_metadata": False,
        "writable": False,
        "nondisruptive": False,
        "preserve_snapshots": False,
    },
    "migration_complete": None,
    "migration_cancel": None,
    "migration_get_progress": None,
}


def new_share(shim: KeystoneShim, name: str, project: str = "demo", pool: str = POOL_A) -> str:
    """A share of a Keystone project, placed on `pool` (this inventory holds a broken pool)."""
    from storage.db import session_scope
    from storage.shares import create_share

    with session_scope() as session:
        return create_share(
            session, project_id=shim.project(project), size=1, name=name, host=pool
        ).id


def token(shim: KeystoneShim, user: str, project: str | None = "from-user") -> str:
    return str(shim.session(user, project).get_token())  # type: ignore[attr-defined]


def api(shim: KeystoneShim, tok: str, project: str, version: str = "2.98") -> httpx.Client:
    return httpx.Client(
        base_url=f"{shim.url}/v2/{shim.project(project)}",
        headers={"X-Auth-Token": tok, "X-OpenStack-Manila-API-Version": version},
        timeout=30,
    )


def wait_state(get: Any, *states: str) -> Any:
    def reached() -> Any:
        share = get()
        if share.task_state == "migration_error":
            raise AssertionError(f"migration of {share.id} failed")
        return share if share.task_state in states else None

    return wait_for(reached, timeout=180, interval=0.5, what=f"task_state in {states}")


def test_manilaclient_with_keystone_session_full_cycle(
    ks_shim: KeystoneShim, worker: int, service_env: Path
) -> None:
    from manilaclient import client

    c = client.Client("2.98", session=ks_shim.session("carol"), service_type="sharev2")
    share_id = new_share(ks_shim, "ks-cycle")
    share = c.shares.get(share_id)  # found through the catalog, like any Manila
    (export,) = c.share_export_locations.list(share_id)
    (Path(export.path.split(":", 1)[1]) / "hello.txt").write_text("through keystone\n")
    resp, _ = c.shares.migration_start(share, POOL_B, False, False, False, False, False)
    assert resp.status_code == 202
    wait_state(lambda: c.shares.get(share_id), *PHASE1_DONE)
    _, progress = c.shares.migration_get_progress(share)
    assert progress["total_progress"] == 100
    resp, _ = c.shares.migration_complete(share)
    assert resp.status_code == 202
    final = wait_state(lambda: c.shares.get(share_id), "migration_success")
    assert (final.status, final.host) == ("available", POOL_B)
    (moved,) = c.share_export_locations.list(share_id)
    assert (Path(moved.path.split(":", 1)[1]) / "hello.txt").read_text() == "through keystone\n"


def test_openstack_cli_with_clouds_yaml_cancel_cycle(
    ks_shim: KeystoneShim, worker: int, service_env: Path, tmp_path: Path
) -> None:
    # README's example, pointed at this Keystone.
    example = yaml.safe_load(yaml_block("clouds:"))
    ((cloud_name, cloud),) = example["clouds"].items()
    cloud["auth"]["auth_url"] = ks_shim.keystone.url
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(yaml.safe_dump(example))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = str(clouds)

    def osc(*args: str) -> str:
        done = subprocess.run(
            [str(BIN / "openstack"), "--os-cloud", cloud_name, *args],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )
        assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout

    share_id = new_share(ks_shim, "ks-osc-cancel", pool=POOL_B)
    osc(
        "share",
        "migration",
        "start",
        *OSC_NO_GUARANTEES,
        share_id,
        POOL_A,
    )
    tok = token(ks_shim, "carol")
    with api(ks_shim, tok, "demo") as c:

        def task_state() -> str | None:
            return c.get(f"/shares/{share_id}").json()["share"]["task_state"]  # type: ignore[no-any-return]

        wait_for(
            lambda: task_state() in PHASE1_DONE, timeout=180, interval=0.5, what="phase 1 done"
        )
        osc("share", "migration", "cancel", share_id)
        wait_for(
            lambda: task_state() == "migration_cancelled",
            timeout=180,
            interval=0.5,
            what="cancelled",
        )
    shown = json.loads(osc("share", "show", share_id, "-f", "json"))
    assert (shown["status"], shown["host"]) == ("available", POOL_B)


def test_member_token_gets_403_on_the_four_migration_actions(
    ks_shim: KeystoneShim, ks_db: Path
) -> None:
    share_id = new_share(ks_shim, "ks-member")
    # 2.97: the last version with all four as actions (2.98 moves progress to a GET).
    with api(ks_shim, token(ks_shim, "alice"), "demo", "2.97") as c:
        assert c.get(f"/shares/{share_id}").status_code == 200  # a member may read it
        for action, body in ACTIONS.items():
            resp = c.post(f"/shares/{share_id}/action", json={action: body})
            assert resp.status_code == 403, (action, resp.text)
            fault = resp.json()["forbidden"]
            assert f"share:{action}" in fault["message"]


def test_another_projects_token_sees_none_of_the_shares(ks_shim: KeystoneShim, ks_db: Path) -> None:
    share_id = new_share(ks_shim, "ks-private")
    bob = token(ks_shim, "bob")
    with api(ks_shim, bob, "other") as c:
        assert c.get(f"/shares/{share_id}").status_code == 404
        listed = c.get("/shares/detail").json()["shares"]
        assert share_id not in [s["id"] for s in listed]
    # bob's token with demo's project in the URL: refused as Manila refuses it.
    with api(ks_shim, bob, "demo") as c:
        resp = c.get(f"/shares/{share_id}")
        assert resp.status_code == 400 and "does not match" in resp.json()["badRequest"]["message"]


def test_unscoped_revoked_and_garbage_tokens_get_401(ks_shim: KeystoneShim) -> None:
    carol = token(ks_shim, "carol")
    with api(ks_shim, carol, "demo") as c:
        assert c.get("/shares").status_code == 200
    admin = ks_shim.keystone.admin_session()
    admin.delete(  # type: ignore[attr-defined]
        "/auth/tokens",
        headers={"X-Subject-Token": carol},
        endpoint_filter={"service_type": "identity", "interface": "public"},
    )
    for tok in (carol, token(ks_shim, "carol", project=None), "not-a-token"):
        with api(ks_shim, tok, "demo") as c:
            resp = c.get("/shares")
        assert resp.status_code == 401, resp.text
        assert resp.headers["WWW-Authenticate"].startswith("Keystone uri=")
        assert "project-scoped token" in resp.json()["error"]["message"]


def test_expired_token_gets_401(ks_shim: KeystoneShim) -> None:
    """Keystone caps a token issued for an application credential at the credential's expiry
    (CVE-2022-2447): a token that really expires while the test watches, without a short
    `[token] expiration` for every other test of the session."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    from keystoneclient.v3 import client

    carol = ks_shim.session("carol")
    expires = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=30)
    cred = client.Client(session=carol).application_credentials.create(
        f"short-{uuid.uuid4().hex[:8]}",
        user=carol.get_user_id(),  # type: ignore[attr-defined]
        expires_at=expires,
    )
    auth = v3.ApplicationCredential(
        auth_url=ks_shim.keystone.url,
        application_credential_id=cred.id,
        application_credential_secret=cred.secret,
    )
    short = str(session.Session(auth=auth, timeout=30).get_token())
    with api(ks_shim, short, "demo") as c:
        assert c.get("/shares").status_code == 200

        def refused() -> httpx.Response | None:
            resp = c.get("/shares")
            return resp if resp.status_code != 200 else None

        resp = wait_for(
            refused,
            timeout=120,
            interval=1,
            what="the application credential's token to expire",
        )
    # Keystone writes a token's expiry "precise to the second" (keystone.common.utils.isotime,
    # subsecond=True drops the microseconds), so the token dies up to a second before `expires`.
    assert datetime.now(UTC).replace(tzinfo=None) >= expires.replace(microsecond=0)
    assert resp.status_code == 401, resp.text
    assert resp.headers["WWW-Authenticate"].startswith("Keystone uri=")
    assert "project-scoped token" in resp.json()["error"]["message"]


def test_keystone_stopped_gives_503_then_recovers(ks_shim: KeystoneShim) -> None:
    carol = token(ks_shim, "carol")
    ks_shim.project("demo")
    ks_shim.keystone.stop()
    try:
        # The client's own timeout is the bound: a shim that hung on Keystone would fail it.
        with api(ks_shim, carol, "demo") as c:
            resp = c.get("/shares", timeout=20)
        assert resp.status_code == 503, resp.text
        assert "Keystone" in resp.json()["serviceUnavailable"]["message"]
        assert resp.headers["Retry-After"] == "5"
    finally:
        ks_shim.keystone.start()
    with api(ks_shim, carol, "demo") as c:
        assert c.get("/shares").status_code == 200


@pytest.mark.parametrize("body", ['"share:migrate": "role:admin"\n', "a: [\n"])
def test_bad_policy_file_is_refused_with_its_line(tmp_path: Path, body: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text('"share:get": "rule:default"\n' + body)
    done = subprocess.run(
        [str(BIN / "sharemig"), "policy", "check", str(policy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{policy} line " in done.stderr.replace("\n", "")

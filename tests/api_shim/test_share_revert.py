"""Revert to snapshot (2.27+) through python-manilaclient, on a loop-mounted btrfs pool.

The shim runs with a btrfs pool and a localfs pool; a share type asking for
`revert_to_snapshot_support` lands on the btrfs pool (the scheduler filters on it, as Manila's
capability filter does) and reverts in place; everything else is refused with Manila's codes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kit.btrfs import mount_btrfs
from tests.kit.shim_server import ShimServer, run_shim

BTRFS_POOL, LOCAL_POOL = "sharemig@btrfs#fast", "sharemig@localfs#plain"


@pytest.fixture(scope="module")
def btrfs_shim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShimServer]:
    base = tmp_path_factory.mktemp("revert")
    why = mount_btrfs(base / "fs.img", base / "fs")
    if why:
        pytest.skip(f"no btrfs test filesystem: {why}")
    try:
        home = base / "home"
        (base / "fs" / "pool").mkdir()
        (base / "plain").mkdir()
        pools = [
            {"name": BTRFS_POOL, "driver": "btrfs", "url": (base / "fs" / "pool").as_uri()},
            {"name": LOCAL_POOL, "driver": "localfs", "url": (base / "plain").as_uri()},
        ]
        home.mkdir()
        for p in pools:
            p["capacity_gb"] = 2
        (home / "pools.yaml").write_text(yaml.safe_dump({"pools": pools}, sort_keys=False))
        with run_shim(home, dict(os.environ)) as server:
            yield server
    finally:
        subprocess.run(["umount", "-l", str(base / "fs")], capture_output=True, check=False)


def manila(shim: ShimServer, version: str = "2.27") -> Any:
    from manilaclient import client

    return client.Client(
        version, input_auth_token=shim.tokens["admin"], service_catalog_url=shim.endpoint()
    )


def data(shim: ShimServer, share: Any) -> Path:
    """The export `host:/path` is the instance's directory on this machine."""
    paths = [e.path for e in manila(shim, "2.9").share_export_locations.list(share)]
    return Path(paths[0].split(":", 1)[1])


@pytest.fixture(scope="module")
def revertible_type(btrfs_shim: ShimServer) -> str:
    st = manila(btrfs_shim).share_types.create(
        "revertible",
        spec_driver_handles_share_servers=False,
        spec_snapshot_support=True,
        extra_specs={"revert_to_snapshot_support": "True"},
    )
    return str(st.id)


def wait_available(client: Any, share: Any) -> Any:
    share = client.shares.get(share)
    assert share.status == "available", share.status
    return share


def test_a_share_goes_back_to_its_latest_snapshot(
    btrfs_shim: ShimServer, revertible_type: str
) -> None:
    from manilaclient import exceptions

    client = manila(btrfs_shim)
    share = client.shares.create("NFS", 1, share_type=revertible_type, name="rev")
    assert client.shares.get(share).host == BTRFS_POOL
    assert client.shares.get(share).revert_to_snapshot_support is True
    root = data(btrfs_shim, share)
    (root / "kept.txt").write_text("version 1\n")
    (root / "sub").mkdir()
    (root / "sub" / "deep.bin").write_bytes(os.urandom(4096))
    deep = (root / "sub" / "deep.bin").read_bytes()
    first = client.share_snapshots.create(share, name="first")
    (root / "kept.txt").write_text("version 2\n")
    snap = client.share_snapshots.create(share, name="second")
    (root / "kept.txt").write_text("version 3, after the last snapshot\n")
    (root / "sub" / "deep.bin").unlink()
    (root / "added-later").write_text("gone after the revert\n")

    with pytest.raises(exceptions.Conflict) as older:
        client.shares.revert_to_snapshot(share, first)
    assert f"latest snapshot is {snap.id}" in str(older.value)

    client.shares.revert_to_snapshot(share, snap)
    share = wait_available(client, share)
    assert client.share_snapshots.get(snap).status == "available"
    root = data(btrfs_shim, share)
    assert (root / "kept.txt").read_text() == "version 2\n"
    assert (root / "sub" / "deep.bin").read_bytes() == deep
    assert not (root / "added-later").exists()
    (root / "writable-again").write_text("the share is live, not the read-only snapshot\n")


def test_revert_is_refused_with_manilas_codes(btrfs_shim: ShimServer, revertible_type: str) -> None:
    from manilaclient import exceptions

    client = manila(btrfs_shim)
    plain = client.shares.create("NFS", 1, name="plain")
    assert client.shares.get(plain).host == LOCAL_POOL
    snap = client.share_snapshots.create(plain)
    with pytest.raises(exceptions.BadRequest) as no_cap:
        client.shares.revert_to_snapshot(plain, snap)
    assert "does not have that capability" in str(no_cap.value)
    assert "revert_to_snapshot_support" in str(no_cap.value)

    mine = client.shares.create("NFS", 1, share_type=revertible_type)
    with pytest.raises(exceptions.BadRequest) as foreign:
        client.shares.revert_to_snapshot(mine, snap)
    assert "is not associated with share" in str(foreign.value)

    with pytest.raises(exceptions.BadRequest) as unknown:
        client.shares.revert_to_snapshot(mine, "0b9a7c4e-0000-4000-8000-000000000000")
    assert "could not be found" in str(unknown.value)

    with btrfs_shim.client("admin", "2.26") as old:
        resp = old.post(
            f"/v2/demo/shares/{mine.id}/action", json={"revert": {"snapshot_id": snap.id}}
        )
    assert resp.status_code == 404 and "2.27" in resp.text
    with btrfs_shim.client("admin", "2.27") as http:
        for body, words in (
            ({"revert": {}}, "snapshot_id not found"),
            ({"revert": {"snapshot_id": ""}}, "snapshot_id is empty"),
            ({"revert": {"snapshot_id": 7}}, "must be a string"),
            ({"revert": None}, "Revert entity not found"),
        ):
            resp = http.post(f"/v2/demo/shares/{mine.id}/action", json=body)
            assert resp.status_code == 400 and words in resp.text, (body, resp.text)

"""No path from input reaches the filesystem outside a pool; tokens are not logged.

Share and snapshot names are labels only: instances and snapshots live under ids the drivers
choose, and every location a driver touches is checked to be one path component.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.kit.reliability import (
    POOL_A,
    POOL_B,
    drive_host_migration,
    instance_dirs,
    new_share,
    record,
    start,
)

HOSTILE = ["..", "../..", "/etc", "a/../../b", ".snapshots", "x\0y", "", "~root"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_never_become_paths(pools: dict[str, Path], name: str) -> None:
    from storage.db import session_scope
    from storage.drivers.base import check_location
    from storage.errors import InvalidInputError
    from storage.pools import driver_for
    from storage.shares import active_instance, create_share, create_snapshot

    before = set(Path("/").iterdir())
    if "\0" in name:
        # No database keeps a NUL (PostgreSQL refuses it): refused up front, as bad input.
        with session_scope() as s, pytest.raises(InvalidInputError, match="NUL"):
            create_share(s, project_id="rel", size=1, host=POOL_A, name=name)
        record("security: hostile share/snapshot names", "refused", 0)
        return
    with session_scope() as s:
        share = create_share(s, project_id="rel", size=1, host=POOL_A, name=name)
        snap = create_snapshot(s, share.id, name=name)
        inst = active_instance(s, share)
        assert name not in (inst.location, snap.id)
        driver = driver_for(s, POOL_A)
        if name not in ("~root",):
            with pytest.raises(Exception, match="invalid location"):
                check_location(name)
            with pytest.raises(Exception, match="invalid location"):
                driver.create_instance(name)
    pool_root = pools[POOL_A].resolve()
    for path in pools[POOL_A].rglob("*"):
        assert path.resolve().is_relative_to(pool_root)
    assert set(Path("/").iterdir()) == before
    record("security: hostile share/snapshot names", "contained", 0)


def test_symlinks_out_of_the_pool_are_copied_as_links_not_followed(
    pools: dict[str, Path], tmp_path: Path
) -> None:
    secret = tmp_path / "outside-secret"
    secret.write_bytes(b"must not be copied into another pool")
    share_id, src = new_share(POOL_A)
    (src / "data.txt").write_bytes(b"share data")
    os.symlink(secret, src / "escape")
    os.symlink("../../../../../../..", src / "root-escape")
    mig = start(share_id, POOL_B)

    outcome = drive_host_migration(mig)

    (dest,) = instance_dirs(share_id)
    assert outcome == "migration_success"
    assert (dest / "escape").is_symlink() and os.readlink(dest / "escape") == str(secret)
    assert (dest / "root-escape").is_symlink()
    stored = [p for p in pools[POOL_B].rglob("*") if p.is_file() and not p.is_symlink()]
    assert all(p.read_bytes() != secret.read_bytes() for p in stored)
    assert secret.read_bytes() == b"must not be copied into another pool"
    record("security: symlink pointing out of the pool", outcome, 0)


def test_tokens_compare_in_constant_time_and_are_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import hmac

    from storage import tokens

    path = tmp_path / "tokens.yaml"
    secret = tokens.create_token("p1", admin=False, path=path)
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: object, b: object) -> bool:
        calls.append((a, b))
        return real(a, b)  # type: ignore[arg-type]

    caplog.set_level(logging.DEBUG)
    tokens.hmac.compare_digest = spy  # type: ignore[attr-defined]
    try:
        assert tokens.lookup_token(secret, path) is not None
        assert tokens.lookup_token(secret[:-1] + "x", path) is None
    finally:
        tokens.hmac.compare_digest = real  # type: ignore[attr-defined]
    assert calls, "token lookup must go through hmac.compare_digest"
    assert secret not in caplog.text
    assert secret not in path.read_text(), "only a digest of the token is stored"
    record("security: token compare and logging", "constant-time, not logged", 0)

"""Storage that misbehaves: injected read/write errors, short writes, bit flips, a full
destination, a source changed or deleted under the copy, slow storage. Every migration ends
in success after retries, or in `migration_error` with the source intact: no byte is lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.faulty_fs import Fault, set_faults
from tests.kit.mounts import tmpfs
from tests.kit.reliability import (
    POOL_A,
    POOL_FAULTY_DST,
    POOL_FAULTY_SRC,
    bytes_lost,
    content,
    drive_host_migration,
    instance_dirs,
    make_tree,
    new_share,
    record,
    start,
)


def _share_state(share_id: str) -> tuple[str, str | None, str]:
    from storage.db import session_scope
    from storage.shares import get_share

    with session_scope() as s:
        share = get_share(s, share_id)
        return share.status, share.task_state, share.host


# (scenario, faults, expected outcome)
RECOVERABLE = [
    ("read error (EIO) once", [Fault("read", "eio", "f003")]),
    ("write error (EIO) once", [Fault("write", "eio", "f007")]),
    ("short write once", [Fault("write", "short", "f011")]),
    ("bit flip on write once", [Fault("write", "flip", "f013")]),
    ("slow storage", [Fault("read", "slow", "d1/", times=-1, delay_s=0.01)]),
]


@pytest.mark.parametrize(("scenario", "faults"), RECOVERABLE, ids=[r[0] for r in RECOVERABLE])
def test_transient_faults_end_in_an_identical_copy(
    pools: dict[str, Path], scenario: str, faults: list[Fault]
) -> None:
    share_id, src = new_share(POOL_FAULTY_SRC)
    expected = make_tree(src)
    mig = start(share_id, POOL_FAULTY_DST)
    plan = set_faults(*faults)

    outcome = drive_host_migration(mig)

    assert plan.fired() >= 1, "the fault never fired: the test would prove nothing"
    (dest,) = instance_dirs(share_id)
    lost = bytes_lost(expected, dest)
    record(f"fault: {scenario}", outcome, lost)
    assert outcome == "migration_success"
    assert content(dest) == expected
    assert _share_state(share_id) == ("available", "migration_success", POOL_FAULTY_DST)
    assert not src.exists()


PERMANENT = [
    ("bit flip on every write", [Fault("write", "flip", "f013", times=-1)]),
    ("destination full (ENOSPC)", [Fault("write", "enospc", "", times=-1)]),
    ("write error on every try", [Fault("write", "eio", "f020", times=-1)]),
]


@pytest.mark.parametrize(("scenario", "faults"), PERMANENT, ids=[r[0] for r in PERMANENT])
def test_lasting_faults_end_in_migration_error_with_the_source_intact(
    pools: dict[str, Path], scenario: str, faults: list[Fault]
) -> None:
    from storage import migration_lifecycle as life

    share_id, src = new_share(POOL_FAULTY_SRC)
    expected = make_tree(src)
    mig = start(share_id, POOL_FAULTY_DST)
    set_faults(*faults)

    outcome = drive_host_migration(mig)

    lost = bytes_lost(expected, src)
    record(f"fault: {scenario}", outcome, lost)
    assert outcome == "migration_error"
    assert content(src) == expected, "the source must be untouched"
    assert instance_dirs(share_id) == [src], "the destination instance must be gone"
    assert not any((pools[POOL_FAULTY_DST]).iterdir())
    assert _share_state(share_id) == ("available", "migration_error", POOL_FAULTY_SRC)
    assert life.status(mig).error


@pytest.mark.parametrize("kind", ["change", "delete"])
def test_source_changed_or_deleted_during_copy(
    pools: dict[str, Path], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client still writing to the share: the copy follows the source's final content."""
    share_id, src = new_share(POOL_FAULTY_SRC)
    make_tree(src)
    mig = start(share_id, POOL_FAULTY_DST)
    plan = set_faults(Fault("read", kind, "f005"))
    expected_after: dict[str, tuple[str, int]] = {}

    def snapshot_source() -> None:
        expected_after.update(content(src))

    from storage import migration_endings as endings

    original = endings.switch_to_destination

    def switch_after_snapshot(migration_id: str, **kw: object) -> None:
        snapshot_source()
        original(migration_id, **kw)  # type: ignore[arg-type]

    endings.switch_to_destination = switch_after_snapshot  # type: ignore[assignment]
    try:
        outcome = drive_host_migration(mig)
    finally:
        endings.switch_to_destination = original  # type: ignore[assignment]

    assert plan.fired() == 1
    (dest,) = instance_dirs(share_id)
    lost = bytes_lost(expected_after, dest)
    record(f"fault: source {kind}d during copy", outcome, lost)
    assert outcome == "migration_success"
    assert content(dest) == expected_after
    if kind == "delete":
        assert not any(p.endswith("f005.bin") for p in expected_after)
        # Counted and said, never silent: it vanished, so it is not migrated.
        said = [r.getMessage() for r in caplog.records if "vanished" in r.getMessage()]
        assert any("1 planned earlier are gone from the source" in m for m in said), said


def test_real_full_destination_tmpfs(pools: dict[str, Path], tmp_path: Path) -> None:
    """A destination pool on a 1 MiB tmpfs: the kernel's ENOSPC, not an injected one."""
    from storage.db import session_scope
    from storage.models import Pool

    small = tmp_path / "small-pool"
    with tmpfs(small, "1m"):
        with session_scope() as s:
            s.add(
                Pool(
                    name="rel@localfs#small",
                    host="rel",
                    backend="localfs",
                    pool="small",
                    driver="localfs",
                    url=small.as_uri(),
                    capacity_gb=100,
                )
            )
        share_id, src = new_share(POOL_A)
        expected = make_tree(src, files=30, size=128 * 1024)
        mig = start(share_id, "rel@localfs#small")
        outcome = drive_host_migration(mig)
        lost = bytes_lost(expected, src)
        record("fault: destination full (tmpfs, real ENOSPC)", outcome, lost)
        assert outcome == "migration_error"
        assert content(src) == expected
        from storage import migration_lifecycle as life

        error = life.status(mig).error or ""
        assert "rel@localfs#small is full" in error and "MiB free of" in error, error
        assert "No space left on device" in error, error
        # The partial copy is gone (no file left on the small pool), its reservation too.
        assert [p for p in small.rglob("*") if not p.is_dir()] == []
        with session_scope() as s:
            from storage.pools import allocated_gb

            assert allocated_gb(s).get("rel@localfs#small", 0) == 0

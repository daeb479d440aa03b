"""Table test of the mechanism decision (contract §9.5): every combination of its inputs."""

from __future__ import annotations

import itertools

import pytest

from storage.drivers.base import Compatibility
from storage.mechanism import Decision, MigrationFlags, choose_mechanism

FLAGS = ("writable", "nondisruptive", "preserve_metadata", "preserve_snapshots")

ALL_TRUE = Compatibility(True, True, True, True, True, reason="same filesystem: rename")
NONE_TRUE = Compatibility(True, reason="copy only")
REFUSED = Compatibility(False, reason="destination is not a localfs pool")
NO_SNAPS = Compatibility(True, True, True, True, False)
NO_META = Compatibility(True, True, True, False, True)


def flags(*names: str, force: bool = False) -> MigrationFlags:
    return MigrationFlags(**{n: True for n in names}, force_host_assisted=force)


# (flags, compat, has_snapshots, expected mechanism, fragment the reason must contain)
TABLE: list[tuple[MigrationFlags, Compatibility | None, bool, str | None, str]] = [
    # driver path taken
    (flags(), ALL_TRUE, False, "driver", "same filesystem: rename"),
    (flags(*FLAGS), ALL_TRUE, True, "driver", "driver-assisted"),
    (flags("writable"), NO_SNAPS, False, "driver", "driver-assisted"),
    (flags(), NONE_TRUE, False, "driver", "driver-assisted"),
    (flags("preserve_snapshots"), ALL_TRUE, True, "driver", "driver-assisted"),
    # driver refuses, nothing demanded, no snapshots: host-assisted fallback
    (flags(), REFUSED, False, "host", "destination is not a localfs pool"),
    (flags(), None, False, "host", "no compatibility report"),
    (flags(force=True), ALL_TRUE, False, "host", "force_host_assisted_migration"),
    (flags(force=True), None, False, "host", "force_host_assisted_migration"),
    # driver compatible but short of a demanded flag: no fallback because that flag was demanded
    (flags("preserve_metadata"), NO_META, False, None, "cannot guarantee preserve_metadata"),
    (flags("writable", "nondisruptive"), NONE_TRUE, False, None, "writable, nondisruptive"),
    (
        flags("nondisruptive"),
        Compatibility(True, True, False, True, True),
        False,
        None,
        "nondisruptive was requested",
    ),
    # driver refuses and a flag was demanded: migration_error
    (flags("writable"), REFUSED, False, None, "fallback is not allowed because writable"),
    (flags("preserve_snapshots"), None, True, None, "preserve_snapshots was requested"),
    # snapshots the driver cannot carry: the driver path fails and host-assisted refuses them
    (flags(), NO_SNAPS, True, None, "cannot carry snapshots"),
    (flags(), REFUSED, True, None, "Delete the share's snapshots"),
    (flags(), None, True, None, "cannot carry snapshots"),
    (flags(force=True), ALL_TRUE, True, None, "cannot carry snapshots"),
    # forced host-assisted with a demanded flag (the API refuses it first; still an error here)
    (flags("writable", force=True), ALL_TRUE, False, None, "force_host_assisted_migration"),
    (flags("preserve_snapshots", force=True), ALL_TRUE, True, None, "preserve_snapshots"),
]


@pytest.mark.parametrize(("req", "compat", "has_snapshots", "expected", "fragment"), TABLE)
def test_table_rows(
    req: MigrationFlags,
    compat: Compatibility | None,
    has_snapshots: bool,
    expected: str | None,
    fragment: str,
) -> None:
    decision = choose_mechanism(req, compat, has_snapshots)
    assert decision.mechanism == expected
    assert fragment in decision.reason
    assert decision.is_error is (expected is None)


def _contract_says(req: MigrationFlags, compat: Compatibility | None, snaps: bool) -> str | None:
    """§9.5 read step by step, kept deliberately literal."""
    # Step 1: the driver path, unless host-assisted is forced.
    if not req.force_host_assisted and compat is not None and compat.compatible:
        caller_flags_met = all(getattr(compat, f) or not getattr(req, f) for f in FLAGS)
        snapshots_ok = compat.preserve_snapshots or not snaps
        if caller_flags_met and snapshots_ok:
            return "driver"
    # Step 2: fallback only with all four flags false; host-assisted refuses snapshots.
    if any(getattr(req, f) for f in FLAGS) or snaps:
        return None
    return "host"


def _all_compat() -> list[Compatibility | None]:
    reports: list[Compatibility | None] = [None, REFUSED]
    for bits in itertools.product((False, True), repeat=4):
        reports.append(Compatibility(True, *bits))
    return reports


def test_every_combination() -> None:
    seen: dict[str | None, int] = {}
    wrong: list[str] = []
    for bits in itertools.product((False, True), repeat=5):
        req = MigrationFlags(*bits)
        for compat in _all_compat():
            for snaps in (False, True):
                decision: Decision = choose_mechanism(req, compat, snaps)
                expected = _contract_says(req, compat, snaps)
                seen[decision.mechanism] = seen.get(decision.mechanism, 0) + 1
                if decision.mechanism != expected or len(decision.reason) < 20:
                    wrong.append(f"{req} {compat} snapshots={snaps}: {decision}")
    assert not wrong, "\n".join(wrong[:20])
    assert sum(seen.values()) == 32 * 18 * 2
    assert set(seen) == {"driver", "host", None}

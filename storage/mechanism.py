"""Which mechanism moves a share: the driver, the host-assisted mover, or neither (§9.5).

One pure function over plain values, so the rule is tested as a table and read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from storage.drivers.base import Compatibility

Mechanism = Literal["driver", "host"]

# The flags a caller may demand, in the order the contract lists them (used in messages).
_FLAG_NAMES = ("writable", "nondisruptive", "preserve_metadata", "preserve_snapshots")


@dataclass(frozen=True)
class MigrationFlags:
    """What `migration_start` asked for (booleans already parsed)."""

    writable: bool = False
    nondisruptive: bool = False
    preserve_metadata: bool = False
    preserve_snapshots: bool = False
    force_host_assisted: bool = False

    def demanded(self) -> tuple[str, ...]:
        """Names of the flags set to true, contract order."""
        return tuple(name for name in _FLAG_NAMES if getattr(self, name))


@dataclass(frozen=True)
class Decision:
    """`mechanism` is None when the migration must end in `migration_error`; `reason` says why."""

    mechanism: Mechanism | None
    reason: str

    @property
    def is_error(self) -> bool:
        return self.mechanism is None


def _driver_refusal(
    flags: MigrationFlags, compat: Compatibility | None, has_snapshots: bool
) -> str:
    """Why the driver path fails (§9.5 step 1), or "" when the driver can take it."""
    if flags.force_host_assisted:
        return "force_host_assisted_migration was requested"
    if compat is None:
        return "the source driver gave no compatibility report"
    if not compat.compatible:
        return f"the driver cannot move it ({compat.reason or 'no reason given'})"
    missing = [name for name in flags.demanded() if not getattr(compat, name)]
    if missing:
        return f"the driver cannot guarantee {', '.join(missing)} for this pair of pools"
    if has_snapshots and not compat.preserve_snapshots:
        return "the share has snapshots and the driver cannot carry them along"
    return ""


def choose_mechanism(
    flags: MigrationFlags, compat: Compatibility | None, has_snapshots: bool
) -> Decision:
    """The contract's §9.5 decision: driver first, host-assisted only where allowed, else error.

    `compat` is the source driver's report for this destination (ignored when host-assisted is
    forced; None means no report could be obtained, which fails the driver path).
    """
    refusal = _driver_refusal(flags, compat, has_snapshots)
    if compat is not None and not refusal:
        how = f" ({compat.reason})" if compat.reason else ""
        return Decision("driver", f"driver-assisted: the back end moves the data itself{how}")
    demanded = flags.demanded()
    if demanded:
        return Decision(
            None,
            f"driver-assisted migration is not possible: {refusal}; host-assisted fallback is "
            f"not allowed because {', '.join(demanded)} was requested. Start again with those "
            "flags false, or pick a destination pool the source driver can migrate to.",
        )
    if has_snapshots:
        return Decision(
            None,
            f"driver-assisted migration is not possible: {refusal}; host-assisted migration "
            "cannot carry snapshots. Delete the share's snapshots, or pick a destination pool "
            "the source driver can migrate to with preserve_snapshots.",
        )
    return Decision("host", f"host-assisted: {refusal}; the data mover copies and verifies")

"""Share type extra specs as Manila validates them (manila/share/share_types.py).

Keys are free, but the required spec and Manila's standardized optional ones must hold values
of their kind; everything is stored as a string, as Manila's extra-specs table stores it.
"""

from __future__ import annotations

import re

from storage.errors import InvalidInputError

DHSS = "driver_handles_share_servers"
REQUIRED = (DHSS,)
BOOLEAN_OPTIONAL = (
    "snapshot_support",
    "create_share_from_snapshot_support",
    "revert_to_snapshot_support",
    "mount_snapshot_support",
    "mount_point_name_support",
    "snapshot_inherit_share_access_support",
)
SIZES = (
    "provisioning:max_share_size",
    "provisioning:min_share_size",
    "provisioning:max_share_extend_size",
)
AVAILABILITY_ZONES = "availability_zones"
REPLICATION_TYPES = ("writable", "readable", "dr")
ENCRYPTION_TYPES = ("share", "share_server")
FREE_STRINGS = ("provisioning:mount_point_prefix", "default_qos_type")
_KEY_NAME = re.compile(r"^[\w.\-:]+$")
_IS_BOOL = re.compile(r"^<is>\s*(True|False)$", re.IGNORECASE)
# oslo's strutils.bool_from_string, strict
_TRUE = {"1", "t", "true", "on", "y", "yes"}
_FALSE = {"0", "f", "false", "off", "n", "no"}


def _bool_or_none(value: object) -> bool | None:
    text = str(value).strip()
    matched = _IS_BOOL.match(text)
    text = (matched.group(1) if matched else text).lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _valid_string(value: object, min_length: int = 1) -> bool:
    return isinstance(value, str) and min_length <= len(value) < 256


def _positive_int(value: object) -> bool:
    try:
        return int(str(value)) >= 1
    except ValueError:
        return False


def _valid_value(key: str, value: object) -> bool:
    """Manila's is_valid_required_extra_spec and is_valid_optional_extra_spec together."""
    if key in REQUIRED or key in BOOLEAN_OPTIONAL:
        return _bool_or_none(value) is not None
    if key in SIZES:
        return _positive_int(value)
    if key == AVAILABILITY_ZONES:
        return all(part.strip() for part in str(value).split(","))
    if key == "replication_type":
        return value in REPLICATION_TYPES
    if key == "encryption_support":
        return value in ENCRYPTION_TYPES
    if key in FREE_STRINGS:
        return _valid_string(value, min_length=0)
    return True


def check_extra_specs(specs: dict[str, object], *, require_all: bool) -> dict[str, str]:
    """The specs as Manila stores them (strings, zone lists trimmed), or InvalidInputError.

    `require_all` is a type's creation: `driver_handles_share_servers` must be there."""
    missing = [k for k in REQUIRED if k not in specs] if require_all else []
    if missing:
        raise InvalidInputError(
            f"Required extra specs '{','.join(missing)}' not specified; e.g. "
            '{"extra_specs": {"driver_handles_share_servers": false}}.'
        )
    checked: dict[str, str] = {}
    for key, value in specs.items():
        if (
            not _valid_string(key)
            or not (_valid_string(value) or isinstance(value, bool))
            or not _valid_value(key, value)
        ):
            raise InvalidInputError(f"Invalid extra_spec: {key}: {value}")
        if not _KEY_NAME.match(key):
            raise InvalidInputError(
                "Key names can only contain alphanumeric characters, underscores, periods, "
                f"colons and hyphens; {key!r} does not."
            )
        text = str(value)
        if key == AVAILABILITY_ZONES:
            text = ",".join(part.strip() for part in text.split(","))
        checked[key] = text
    return checked

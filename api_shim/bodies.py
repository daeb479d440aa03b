"""Request bodies, validated the way Manila's schemas do, with messages a person can act on."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import Depends, Request

from api_shim.faults import Fault
from storage.migration_admission import StartRequest

# Manila's strict bool_from_string accepts exactly these (contract §5.1); numbers, null,
# "Y", "T", mixed case such as "tRuE" and padded strings are refused.
_TRUE = frozenset({"True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t"})
_FALSE = frozenset(
    {"False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f"}
)
START_FLAGS = ("preserve_metadata", "preserve_snapshots", "writable", "nondisruptive")
MALFORMED = "Malformed request body"


def _shown(value: object) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def invalid(field: str, value: object, reason: str) -> Fault:
    return Fault(
        400, f"Invalid input for field/attribute {field}. Value: {_shown(value)}. {reason}"
    )


def manila_bool(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _TRUE:
        return True
    if isinstance(value, str) and value in _FALSE:
        return False
    raise invalid(
        field,
        value,
        f"{_shown(value)} is not a boolean; use true/false or one of the strings "
        "'True', 'False', 'yes', 'no', 'on', 'off', '1', '0', 'y', 'n', 't', 'f'.",
    )


def _optional_id(body: dict[str, object], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid(key, value, f"{_shown(value)} is not of type 'string' or null.")
    return value


def parse_start(value: object) -> StartRequest:
    """The inner object of `migration_start`; unknown keys are ignored as Manila does."""
    if not isinstance(value, dict):
        raise invalid(
            "migration_start",
            value,
            f"{_shown(value)} is not of type 'object'; send "
            '{"migration_start": {"host": "host@backend#pool", "preserve_metadata": false, '
            '"preserve_snapshots": false, "writable": false, "nondisruptive": false}}.',
        )
    for key in ("host", *START_FLAGS):
        if key not in value:
            raise invalid("migration_start", value, f"'{key}' is a required property.")
    host = value["host"]
    if not isinstance(host, str):
        raise invalid("host", host, f"{_shown(host)} is not of type 'string' (host@backend#pool).")
    flags = {key: manila_bool(value[key], key) for key in START_FLAGS}
    force = value.get("force_host_assisted_migration", False)
    return StartRequest(
        host=host,
        force_host_assisted_migration=manila_bool(force, "force_host_assisted_migration"),
        new_share_network_id=_optional_id(value, "new_share_network_id"),
        new_share_type_id=_optional_id(value, "new_share_type_id"),
        **flags,
    )


def parse_reset(value: object, action: str, key: str) -> object:
    """`{"reset_status": {"status": X}}` and `{"reset_task_state": {"task_state": X}}`."""
    if not isinstance(value, dict) or key not in value:
        raise Fault(400, f'Must specify \'{key}\': send {{"{action}": {{"{key}": <value>}}}}.')
    return value[key]


async def _raw_body(request: Request) -> tuple[str, bytes]:
    return request.headers.get("content-type", ""), await request.body()


RawBody = Annotated[tuple[str, bytes], Depends(_raw_body)]


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def frame_action(raw: tuple[str, bytes]) -> tuple[str, object]:
    """Contract §4: a JSON object with exactly one key, the action name."""
    content_type, data = raw
    if not _is_json(content_type):
        raise Fault(
            400,
            "There is no such action: None. Send the action as a JSON object with "
            "'Content-Type: application/json', e.g. {\"migration_complete\": null}.",
        )
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Fault(400, f"{MALFORMED}: the body is not valid JSON.") from None
    if not isinstance(body, dict) or len(body) != 1:
        # The reference answers 404 for a few of these shapes (a quirk, §4); 400 says why.
        raise Fault(
            400,
            f"{MALFORMED}: the body must be a JSON object with exactly one key naming the "
            'action, e.g. {"migration_get_progress": null}.',
        )
    ((action, value),) = body.items()
    return action, value


async def _json_object(request: Request) -> dict[str, object]:
    if not _is_json(request.headers.get("content-type", "")):
        raise Fault(400, f"{MALFORMED}: send a JSON body with 'Content-Type: application/json'.")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise Fault(400, f"{MALFORMED}: the body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise Fault(400, f"{MALFORMED}: the body must be a JSON object.")
    return body


JsonObject = Annotated[dict[str, object], Depends(_json_object)]


def member(body: dict[str, object], key: str, example: str) -> dict[str, object]:
    """`body[key]` as an object, e.g. the `share` of `{"share": {...}}`."""
    value = body.get(key)
    if not isinstance(value, dict):
        raise Fault(400, f'{MALFORMED}: expected {{"{key}": {{...}}}}, e.g. {example}.')
    return value

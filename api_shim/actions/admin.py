"""Admin repairs operators use on stuck shares: reset_status and reset_task_state."""

from __future__ import annotations

from starlette.responses import Response

from api_shim.bodies import parse_reset
from api_shim.context import RequestContext
from api_shim.faults import Fault
from api_shim.versions import MIGRATION_ACTION, VersionRange, v
from storage.db import session_scope
from storage.migration_admission import reset_task_state as reset_task_state_in_db
from storage.shares import RESETTABLE_STATUSES
from storage.shares import reset_status as reset_status_in_db

RESET_STATUS = (VersionRange(v("2.7")),)
RESET_STATUS_LEGACY = (VersionRange(v("2.0"), v("2.6")),)


def reset_task_state(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(MIGRATION_ACTION, "reset_task_state")
    ctx.authorize("share:reset_task_state")
    task_state = parse_reset(value, "reset_task_state", "task_state")
    if task_state is not None and not isinstance(task_state, str):
        raise Fault(400, f"Invalid task_state {task_state!r}: use null or a task state name.")
    with session_scope() as session:
        reset_task_state_in_db(session, share_id, task_state)
    return Response(status_code=202)


def _reset_status(ctx: RequestContext, share_id: str, value: object, action: str) -> Response:
    ctx.authorize("share:reset_status")
    status = parse_reset(value, action, "status")
    if not isinstance(status, str) or status not in RESETTABLE_STATUSES:
        allowed = ", ".join(sorted(RESETTABLE_STATUSES))
        raise Fault(400, f"Invalid status {status!r}: use one of {allowed}.")
    with session_scope() as session:
        reset_status_in_db(session, share_id, status)
    return Response(status_code=202)


def reset_status(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(RESET_STATUS, "reset_status")
    return _reset_status(ctx, share_id, value, "reset_status")


def reset_status_legacy(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(RESET_STATUS_LEGACY, "os-reset_status")
    return _reset_status(ctx, share_id, value, "os-reset_status")

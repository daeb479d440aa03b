"""`POST /shares/{id}/action`: one table from action name to handler (contract §4)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response

from api_shim.actions import access, admin, migration, resize, revert
from api_shim.bodies import frame_action
from api_shim.context import RequestContext
from api_shim.faults import Fault

Handler = Callable[[RequestContext, str, object], Response]

HANDLERS: dict[str, Handler] = {
    "migration_start": migration.start,
    "migration_complete": migration.complete,
    "migration_cancel": migration.cancel,
    "migration_get_progress": migration.progress,
    "reset_task_state": admin.reset_task_state,
    "reset_status": admin.reset_status,
    "os-reset_status": admin.reset_status_legacy,
    "allow_access": access.allow,
    "os-allow_access": access.allow_legacy,
    "deny_access": access.deny,
    "os-deny_access": access.deny_legacy,
    "access_list": access.list_rules,
    "os-access_list": access.list_rules_legacy,
    "extend": resize.extend,
    "os-extend": resize.extend_legacy,
    "shrink": resize.shrink,
    "os-shrink": resize.shrink_legacy,
    "revert": revert.revert,
}


def dispatch(ctx: RequestContext, share_id: str, raw: tuple[str, bytes]) -> Response:
    """Frame the body, check the URL's project, then hand over (the order of §4)."""
    action, value = frame_action(raw)
    handler = HANDLERS.get(action)
    if handler is None:
        known = ", ".join(sorted(HANDLERS))
        raise Fault(400, f"There is no such action: {action}. Actions sharemig serves: {known}.")
    ctx.check_project()
    return handler(ctx, share_id, value)

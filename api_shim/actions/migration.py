"""The four migration actions; each checks version, then admin, then hands over to flows.control.

`flows.control` is imported on first use: it brings Prefect in, which the rest of the API
(versions, shares, types) does not need in order to start serving. Each action that talks to
Prefect runs under one budget (`SHAREMIG_PREFECT_TIMEOUT_S`): past it, a 503 with Retry-After.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from api_shim.bodies import parse_start
from api_shim.context import RequestContext
from api_shim.versions import MIGRATION_ACTION, MIGRATION_START, PROGRESS_ACTION, PROGRESS_GET


def _via(ctx: RequestContext, action: str) -> str:
    return f"{action} through the Manila API (project {ctx.project_id})"


def start(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(MIGRATION_START, "migration_start")
    ctx.authorize("share:migration_start")
    req = parse_start(value)
    from flows import control
    from flows.prefect_calls import prefect_budget

    with prefect_budget(since=ctx.arrived):
        outcome = control.start_migration(share_id, req, project_id=ctx.visible_project)
    return Response(status_code=200 if outcome.noop else 202)


def complete(ctx: RequestContext, share_id: str, _value: object) -> Response:
    ctx.require(MIGRATION_ACTION, "migration_complete")
    ctx.authorize("share:migration_complete")
    from flows import control
    from flows.prefect_calls import prefect_budget

    with prefect_budget(since=ctx.arrived):
        control.complete_migration(
            share_id, project_id=ctx.visible_project, reason=_via(ctx, "migration_complete")
        )
    return Response(status_code=202)


def cancel(ctx: RequestContext, share_id: str, _value: object) -> Response:
    ctx.require(MIGRATION_ACTION, "migration_cancel")
    ctx.authorize("share:migration_cancel")
    from flows import control
    from flows.prefect_calls import prefect_budget

    with prefect_budget(since=ctx.arrived):
        control.cancel_migration(
            share_id, project_id=ctx.visible_project, reason=_via(ctx, "migration_cancel")
        )
    return Response(status_code=202)


def progress_body(ctx: RequestContext, share_id: str) -> JSONResponse:
    ctx.authorize("share:migration_get_progress")
    from flows import control

    view = control.migration_progress(share_id, project_id=ctx.visible_project)
    body: dict[str, object] = {"total_progress": view.total_progress, "task_state": view.task_state}
    if ctx.at_least("2.59"):
        body["details"] = dict(view.details)
    return JSONResponse(body)


def progress(ctx: RequestContext, share_id: str, _value: object) -> Response:
    """The POST form (2.22-2.97); from 2.98 it is `GET .../migration-progress`."""
    ctx.require(PROGRESS_ACTION, "migration_get_progress")
    return progress_body(ctx, share_id)


def progress_get(ctx: RequestContext, share_id: str) -> Response:
    ctx.require(PROGRESS_GET, "GET migration-progress")
    return progress_body(ctx, share_id)

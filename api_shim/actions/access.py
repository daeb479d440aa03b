"""Access rules through the action endpoint (allow, deny, list), as the clients use them."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from api_shim import views
from api_shim.context import RequestContext
from api_shim.faults import Fault
from api_shim.versions import VersionRange, v
from storage.db import session_scope
from storage.shares import allow_access, deny_access, get_share, list_access

CURRENT = (VersionRange(v("2.7")),)
LEGACY = (VersionRange(v("2.0"), v("2.6")),)
LIST_CURRENT = (VersionRange(v("2.7"), v("2.44")),)


def _allow(ctx: RequestContext, share_id: str, value: object) -> Response:
    if not isinstance(value, dict):
        raise Fault(
            400,
            'Malformed request body: send {"allow_access": {"access_type": "ip", '
            '"access_to": "10.0.0.0/24", "access_level": "rw"}}.',
        )
    fields = {k: value.get(k) for k in ("access_type", "access_to", "access_level")}
    for key in ("access_type", "access_to"):
        if not isinstance(fields[key], str):
            raise Fault(400, f"Invalid input: '{key}' is required and must be a string.")
    level = fields["access_level"] if fields["access_level"] is not None else "rw"
    if not isinstance(level, str):
        raise Fault(400, "Invalid input: 'access_level' must be 'rw' or 'ro'.")
    with session_scope() as session:
        rule = allow_access(
            session,
            share_id,
            str(fields["access_type"]),
            str(fields["access_to"]),
            level,
            project_id=ctx.visible_project,
        )
        return JSONResponse({"access": views.access_rule(ctx, rule, with_share=True)})


def _deny(ctx: RequestContext, share_id: str, value: object) -> Response:
    rule_id = value.get("access_id") if isinstance(value, dict) else None
    if not isinstance(rule_id, str):
        raise Fault(400, 'Must specify \'access_id\': send {"deny_access": {"access_id": "<id>"}}.')
    with session_scope() as session:
        deny_access(session, share_id, rule_id, project_id=ctx.visible_project)
    return Response(status_code=202)


def _list(ctx: RequestContext, share_id: str) -> Response:
    with session_scope() as session:
        get_share(session, share_id, ctx.visible_project)
        rules = [
            views.access_rule(ctx, r, with_share=False) for r in list_access(session, share_id)
        ]
    return JSONResponse({"access_list": rules})


def allow(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(CURRENT, "allow_access")
    return _allow(ctx, share_id, value)


def allow_legacy(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(LEGACY, "os-allow_access")
    return _allow(ctx, share_id, value)


def deny(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(CURRENT, "deny_access")
    return _deny(ctx, share_id, value)


def deny_legacy(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(LEGACY, "os-deny_access")
    return _deny(ctx, share_id, value)


def list_rules(ctx: RequestContext, share_id: str, _value: object) -> Response:
    ctx.require(LIST_CURRENT, "access_list (from 2.45: GET /share-access-rules?share_id=)")
    return _list(ctx, share_id)


def list_rules_legacy(ctx: RequestContext, share_id: str, _value: object) -> Response:
    ctx.require(LEGACY, "os-access_list")
    return _list(ctx, share_id)

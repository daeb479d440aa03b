"""`GET /share-access-rules` (2.45+): how current clients list a share's access rules."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from api_shim import views
from api_shim.context import Ctx
from api_shim.faults import Fault
from api_shim.versions import VersionRange, v
from storage.db import session_scope
from storage.errors import NotFoundError
from storage.models import AccessRule
from storage.shares import get_share, list_access

router = APIRouter(prefix="/v2/share-access-rules")
ACCESS_RULES = (VersionRange(v("2.45")),)


@router.get("")
def index(ctx: Ctx, request: Request) -> JSONResponse:
    ctx.require(ACCESS_RULES, "share-access-rules")
    share_id = request.query_params.get("share_id")
    if not share_id:
        raise Fault(
            400, "Query parameter share_id is required: GET /share-access-rules?share_id=<id>."
        )
    with session_scope() as session:
        get_share(session, share_id, ctx.visible_project)
        rules = [
            views.access_rule(ctx, r, with_share=False) for r in list_access(session, share_id)
        ]
    return JSONResponse({"access_list": rules})


@router.get("/{rule_id}")
def show(ctx: Ctx, rule_id: str) -> JSONResponse:
    ctx.require(ACCESS_RULES, "share-access-rules")
    with session_scope() as session:
        rule = session.get(AccessRule, rule_id)
        # Another project's rule is "not found" like a missing one: naming its share would
        # tell the caller a share id it may not see.
        with contextlib.suppress(NotFoundError):
            if rule is not None:
                get_share(session, rule.share_id, ctx.visible_project)
                return JSONResponse({"access": views.access_rule(ctx, rule, with_share=True)})
    raise Fault(404, f"Access rule {rule_id} not found.")

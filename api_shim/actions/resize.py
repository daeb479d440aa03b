"""`extend` and `shrink` (`os-extend`, `os-shrink` below 2.7): 202, done within the request."""

from __future__ import annotations

from starlette.responses import Response

from api_shim.bodies import invalid
from api_shim.context import RequestContext
from api_shim.faults import Fault
from api_shim.versions import VersionRange, v
from storage.db import session_scope
from storage.share_size import extend_share, shrink_share

CURRENT = (VersionRange(v("2.7")),)
LEGACY = (VersionRange(v("2.0"), v("2.6")),)


def _new_size(value: object, action: str) -> int:
    size = value.get("new_size") if isinstance(value, dict) else None
    if size is None:
        raise Fault(400, f'Must specify \'new_size\': send {{"{action}": {{"new_size": 2}}}}.')
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size)
    if not isinstance(size, int) or isinstance(size, bool):
        raise invalid("new_size", size, "new_size must be a whole number of GiB.")
    return size


def _extend(ctx: RequestContext, share_id: str, value: object, action: str) -> Response:
    size = _new_size(value, action)
    with session_scope() as session:
        extend_share(session, share_id, size, project_id=ctx.visible_project)
    return Response(status_code=202)


def _shrink(ctx: RequestContext, share_id: str, value: object, action: str) -> Response:
    size = _new_size(value, action)
    with session_scope() as session:
        shrink_share(session, share_id, size, project_id=ctx.visible_project)
    return Response(status_code=202)


def extend(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(CURRENT, "extend")
    return _extend(ctx, share_id, value, "extend")


def extend_legacy(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(LEGACY, "os-extend")
    return _extend(ctx, share_id, value, "os-extend")


def shrink(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(CURRENT, "shrink")
    return _shrink(ctx, share_id, value, "shrink")


def shrink_legacy(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(LEGACY, "os-shrink")
    return _shrink(ctx, share_id, value, "os-shrink")

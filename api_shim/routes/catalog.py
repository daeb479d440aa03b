"""Share types, share networks and scheduler-stats pools (what `manila pool-list` shows)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.responses import JSONResponse, Response

from api_shim import views
from api_shim.bodies import JsonObject, RawBody, frame_action, invalid, manila_bool, member
from api_shim.context import Ctx, RequestContext
from api_shim.faults import Fault
from api_shim.versions import VersionRange, v
from storage.catalog import (
    ALL,
    add_type_access,
    create_share_network,
    create_share_type,
    delete_share_type,
    ensure_default_share_type,
    get_share_network,
    get_share_type,
    list_share_networks,
    list_share_types,
    remove_type_access,
    type_access,
    update_share_type,
)
from storage.db import session_scope
from storage.models import Pool, ShareType
from storage.pools import allocated_gb

router = APIRouter(prefix="/v2")


TYPE_EXAMPLE = (
    '{"share_type": {"name": "gold", "extra_specs": {"driver_handles_share_servers": false}}}'
)
TYPE_UPDATE = (VersionRange(v("2.50")),)
ACCESS_CURRENT = (VersionRange(v("2.7")),)
ACCESS_LEGACY = (VersionRange(v("2.0"), v("2.6")),)


def _one(ctx: RequestContext, st: ShareType) -> JSONResponse:
    """Manila answers every single type under both keys (`volume_type` is the old name)."""
    view = views.share_type(ctx, st)
    return JSONResponse({"share_type": view, "volume_type": view})


def _is_public_query(request: Request) -> bool | str | None:
    raw = request.query_params.get("is_public")
    if raw is None:
        return True
    if raw.strip().lower() == ALL:
        return ALL
    return manila_bool(raw, "is_public")


def _type_body(body: dict[str, object]) -> dict[str, object]:
    key = "share_type" if "share_type" in body else "volume_type"
    return member(body, key, TYPE_EXAMPLE)


@router.get("/types")
def types(ctx: Ctx, request: Request) -> JSONResponse:
    with session_scope() as session:
        found = list_share_types(
            session, ctx.project_id, is_public=_is_public_query(request), admin=ctx.is_admin
        )
        listed = [views.share_type(ctx, t) for t in found]
    return JSONResponse({"share_types": listed, "volume_types": listed})


@router.get("/types/default")
def default_type(ctx: Ctx) -> JSONResponse:
    with session_scope() as session:
        return _one(ctx, ensure_default_share_type(session))


@router.get("/types/{type_id}")
def show_type(ctx: Ctx, type_id: str) -> JSONResponse:
    with session_scope() as session:
        return _one(ctx, get_share_type(session, type_id, project_id=_visible_to(ctx)))


def _visible_to(ctx: RequestContext) -> str | None:
    return None if ctx.is_admin else ctx.project_id


@router.post("/types")
def create_type(ctx: Ctx, body: JsonObject) -> JSONResponse:
    ctx.authorize("share_type:create")
    spec = _type_body(body)
    name, extra_specs = spec.get("name"), spec.get("extra_specs") or {}
    description = spec.get("description")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise invalid(
            "name", name, f"A share type needs a name of 1-255 characters: {TYPE_EXAMPLE}."
        )
    if description is not None and not isinstance(description, str):
        raise invalid("description", description, "description must be a string.")
    if description and not ctx.at_least("2.41"):
        raise Fault(
            400,
            "'description' key is not supported by this microversion. Use 2.41 or greater "
            "microversion to be able to use 'description' in share type.",
        )
    if not isinstance(extra_specs, dict) or "driver_handles_share_servers" not in extra_specs:
        raise invalid(
            "extra_specs", extra_specs, "extra_specs must hold driver_handles_share_servers."
        )
    # Manila keeps extra specs as strings: `true` arrives as "True".
    specs: dict[str, object] = {
        str(k): str(val) if isinstance(val, bool) else val for k, val in extra_specs.items()
    }
    if not ctx.at_least("2.24"):
        # Before 2.24 snapshot_support was not required and Manila set it for the caller.
        specs.setdefault("snapshot_support", "True")
    public = spec.get("os-share-type-access:is_public", spec.get("share_type_access:is_public"))
    with session_scope() as session:
        st = create_share_type(
            session,
            name,
            specs,
            is_public=True if public is None else manila_bool(public, "is_public"),
            description=description or None,
        )
        return _one(ctx, st)


@router.put("/types/{type_id}")
def update_type(ctx: Ctx, type_id: str, body: JsonObject) -> JSONResponse:
    ctx.require(TYPE_UPDATE, "PUT /types/{id}")
    ctx.authorize("share_type:update")
    spec = _type_body(body)
    name, description = spec.get("name"), spec.get("description")
    public = spec.get("share_type_access:is_public")
    if name is None and description is None and public is None:
        raise Fault(
            400,
            "Specify share type name, description, share_type_access:is_public or a "
            'combination thereof, e.g. {"share_type": {"name": "gold2"}}.',
        )
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 255):
        raise invalid("name", name, "Share type name must be 1-255 characters.")
    if description is not None and (not isinstance(description, str) or len(description) > 255):
        raise invalid("description", description, "description must be a string of <= 255.")
    with session_scope() as session:
        st = update_share_type(
            session,
            type_id,
            name=name,
            description=description,
            is_public=None
            if public is None
            else manila_bool(public, "share_type_access:is_public"),
        )
        return _one(ctx, st)


@router.delete("/types/{type_id}")
def delete_type(ctx: Ctx, type_id: str) -> Response:
    ctx.authorize("share_type:delete")
    with session_scope() as session:
        delete_share_type(session, type_id)
    return Response(status_code=202)


def _access_list(ctx: RequestContext, type_id: str) -> JSONResponse:
    ctx.authorize("share_type:list_project_access")
    with session_scope() as session:
        st = get_share_type(session, type_id)
        return JSONResponse(views.share_type_access(st, type_access(session, type_id)))


@router.get("/types/{type_id}/share_type_access")
def access_list(ctx: Ctx, type_id: str) -> JSONResponse:
    ctx.require(ACCESS_CURRENT, "share_type_access")
    return _access_list(ctx, type_id)


@router.get("/types/{type_id}/os-share-type-access")
def access_list_legacy(ctx: Ctx, type_id: str) -> JSONResponse:
    ctx.require(ACCESS_LEGACY, "os-share-type-access")
    return _access_list(ctx, type_id)


@router.post("/types/{type_id}/action")
def type_action(ctx: Ctx, type_id: str, raw: RawBody) -> Response:
    action, value = frame_action(raw)
    change = {"addProjectAccess": add_type_access, "removeProjectAccess": remove_type_access}
    if action not in change:
        ctx.require_admin()
        raise Fault(
            400, f"There is no such action: {action}; use addProjectAccess or removeProjectAccess."
        )
    rule = {
        "addProjectAccess": "add_project_access",
        "removeProjectAccess": "remove_project_access",
    }
    ctx.authorize(f"share_type:{rule[action]}")
    project = value.get("project") if isinstance(value, dict) else None
    if not isinstance(project, str) or not project:
        raise Fault(
            400,
            f'Missing required element \'project\': send {{"{action}": {{"project": "<id>"}}}}.',
        )
    with session_scope() as session:
        change[action](session, type_id, project)
    return Response(status_code=202)


@router.get("/share-networks")
@router.get("/share-networks/detail")
def networks(ctx: Ctx) -> JSONResponse:
    with session_scope() as session:
        nets = list_share_networks(session, None if ctx.is_admin else ctx.project_id)
        return JSONResponse({"share_networks": [views.share_network(ctx, n) for n in nets]})


@router.get("/share-networks/{network_id}")
def show_network(ctx: Ctx, network_id: str) -> JSONResponse:
    with session_scope() as session:
        net = get_share_network(session, network_id, None if ctx.is_admin else ctx.project_id)
        return JSONResponse({"share_network": views.share_network(ctx, net)})


@router.post("/share-networks")
def create_network(ctx: Ctx, body: JsonObject) -> JSONResponse:
    spec = member(body, "share_network", '{"share_network": {"name": "net1"}}')
    name, description = spec.get("name"), spec.get("description")
    if not isinstance(name, str | None) or not isinstance(description, str | None):
        raise Fault(400, "Invalid input: name and description must be strings or null.")
    with session_scope() as session:
        net = create_share_network(session, ctx.project_id, name, description)
        return JSONResponse({"share_network": views.share_network(ctx, net)})


def _pools(ctx: Ctx, request: Request, *, detail: bool) -> JSONResponse:
    ctx.authorize("scheduler_stats:pools:detail" if detail else "scheduler_stats:pools:index")
    filters = {
        k: request.query_params[k] for k in ("pool", "host", "backend") if k in request.query_params
    }
    try:
        patterns = {k: re.compile(val) for k, val in filters.items()}
    except re.error as exc:
        raise Fault(400, f"Invalid pool filter: {exc}; filters are regular expressions.") from None
    with session_scope() as session:
        allocated = allocated_gb(session)
        pools = [
            views.pool(p, allocated.get(p.name, 0), detail=detail)
            for p in session.scalars(select(Pool).where(Pool.enabled.is_(True)).order_by(Pool.name))
            if all(pat.match(getattr(p, key)) for key, pat in patterns.items())
        ]
    return JSONResponse({"pools": pools})


@router.get("/scheduler-stats/pools")
def pools(ctx: Ctx, request: Request) -> JSONResponse:
    return _pools(ctx, request, detail=False)


@router.get("/scheduler-stats/pools/detail")
def pools_detail(ctx: Ctx, request: Request) -> JSONResponse:
    return _pools(ctx, request, detail=True)

"""Share types, share networks and scheduler-stats pools (what `manila pool-list` shows)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.responses import JSONResponse

from api_shim import views
from api_shim.bodies import JsonObject, invalid, manila_bool, member
from api_shim.context import Ctx
from api_shim.faults import Fault
from storage.catalog import (
    create_share_network,
    create_share_type,
    ensure_default_share_type,
    get_share_network,
    get_share_type,
    list_share_networks,
    list_share_types,
)
from storage.db import session_scope
from storage.models import Pool
from storage.pools import allocated_gb

router = APIRouter(prefix="/v2")


@router.get("/types")
def types(ctx: Ctx) -> JSONResponse:
    with session_scope() as session:
        return JSONResponse(
            {"share_types": [views.share_type(ctx, t) for t in list_share_types(session)]}
        )


@router.get("/types/default")
def default_type(ctx: Ctx) -> JSONResponse:
    with session_scope() as session:
        return JSONResponse(
            {"share_type": views.share_type(ctx, ensure_default_share_type(session))}
        )


@router.get("/types/{type_id}")
def show_type(ctx: Ctx, type_id: str) -> JSONResponse:
    with session_scope() as session:
        return JSONResponse({"share_type": views.share_type(ctx, get_share_type(session, type_id))})


@router.post("/types")
def create_type(ctx: Ctx, body: JsonObject) -> JSONResponse:
    ctx.authorize("share_type:create")
    example = (
        '{"share_type": {"name": "gold", "extra_specs": {"driver_handles_share_servers": false}}}'
    )
    spec = member(body, "share_type", example)
    name, extra_specs = spec.get("name"), spec.get("extra_specs") or {}
    if not isinstance(name, str) or not name:
        raise invalid("name", name, f"A share type needs a name, e.g. {example}.")
    if not isinstance(extra_specs, dict) or "driver_handles_share_servers" not in extra_specs:
        raise invalid(
            "extra_specs", extra_specs, "extra_specs must hold driver_handles_share_servers."
        )
    public = spec.get("share_type_access:is_public", spec.get("os-share-type-access:is_public"))
    with session_scope() as session:
        st = create_share_type(
            session,
            name,
            {str(k): v for k, v in extra_specs.items()},
            is_public=True if public is None else manila_bool(public, "is_public"),
        )
        if isinstance(spec.get("description"), str):
            st.description = spec["description"]  # type: ignore[assignment]
        return JSONResponse({"share_type": views.share_type(ctx, st)})


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

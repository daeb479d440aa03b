"""Shares: create, show, list, delete, export locations, the action endpoint, GET progress."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse, Response

from api_shim import views
from api_shim.actions import dispatch
from api_shim.actions.migration import progress_get
from api_shim.bodies import JsonObject, RawBody, invalid, manila_bool, member
from api_shim.context import Ctx, RequestContext, UncheckedCtx
from api_shim.faults import Fault
from api_shim.versions import VersionRange, v
from storage.catalog import get_share_type
from storage.db import session_scope
from storage.errors import InvalidStateError
from storage.models import Share, ShareType
from storage.shares import (
    create_share,
    delete_share,
    export_locations,
    get_share,
    get_snapshot,
    list_shares,
)

router = APIRouter(prefix="/v2/shares")
EXPORT_LOCATIONS = (VersionRange(v("2.9")),)
_TRUE_QUERY = frozenset({"1", "true", "yes", "on", "t", "y"})
SHARE_EXAMPLE = '{"share": {"share_proto": "NFS", "size": 1}}'


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").strip().lower() in _TRUE_QUERY


def _share_view(ctx: RequestContext, session: Session, share: Share) -> dict[str, object]:
    share_type = session.get(ShareType, share.share_type_id)
    assert share_type is not None  # a foreign key
    exports = None if ctx.at_least("2.9") else export_locations(session, share.id)
    return views.share_detail(ctx, share, share_type, exports)


def _visible(ctx: RequestContext, request: Request, session: Session) -> list[Share]:
    """The list filters clients send (contract clients.md #4, #4b)."""
    if _flag(request, "is_soft_deleted"):
        return []  # no recycle bin here; live shares must never match this query
    everyone = ctx.is_admin and _flag(request, "all_tenants")
    shares = list_shares(session, None if everyone else ctx.project_id)
    if _flag(request, "is_public") and not everyone:
        mine = {s.id for s in shares}
        shares += [s for s in list_shares(session, None) if s.is_public and s.id not in mine]
    q = request.query_params
    for field in ("name", "status", "share_network_id", "share_type_id", "host"):
        if field in q:
            attr = "host" if field == "host" and ctx.is_admin else field
            shares = [s for s in shares if str(getattr(s, attr, None)) == q[field]]
    offset = int(q.get("offset", "0")) if q.get("offset", "0").isdigit() else 0
    shares = shares[offset:]
    limit = q.get("limit")
    return shares[: int(limit)] if limit and limit.isdigit() else shares


def _snapshot_size(ctx: RequestContext, snapshot_id: str) -> int:
    """Manila sizes a share made from a snapshot like the snapshot when no size is given."""
    with session_scope() as session:
        return get_snapshot(session, snapshot_id, ctx.visible_project).size


@router.post("")
def create(ctx: Ctx, body: JsonObject) -> JSONResponse:
    spec = member(body, "share", SHARE_EXAMPLE)
    proto, size = spec.get("share_proto"), spec.get("size")
    if not isinstance(proto, str) or not proto:
        raise invalid("share_proto", proto, f"share_proto is required, e.g. {SHARE_EXAMPLE}.")
    snapshot_id = spec.get("snapshot_id") or None
    if snapshot_id is not None and not isinstance(snapshot_id, str):
        raise invalid("snapshot_id", snapshot_id, "snapshot_id must be a snapshot's id.")
    if isinstance(size, str) and size.isdigit():
        size = int(size)
    if size is None and snapshot_id:
        size = _snapshot_size(ctx, snapshot_id)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise invalid("size", size, "Share size must be a whole number of GiB, at least 1.")
    metadata = spec.get("metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise invalid("metadata", metadata, "metadata must be an object of string keys.")
    text = {k: spec.get(k) for k in ("name", "description", "availability_zone")}
    for key, value in text.items():
        if value is not None and not isinstance(value, str):
            raise invalid(key, value, f"{key} must be a string or null.")
    type_ref = spec.get("share_type") or spec.get("volume_type")
    network = spec.get("share_network_id")
    if type_ref is not None and not isinstance(type_ref, str):
        raise invalid("share_type", type_ref, "share_type must be a share type id or name.")
    if network is not None and not isinstance(network, str):
        raise invalid("share_network_id", network, "share_network_id must be a string or null.")
    with session_scope() as session:
        if type_ref and not ctx.is_admin:
            # A private type this project has no access to is "not found", as in Manila.
            get_share_type(session, type_ref, project_id=ctx.project_id)
        share = create_share(
            session,
            project_id=ctx.project_id,
            user_id=None,
            size=size,
            share_proto=proto,
            name=text["name"],  # type: ignore[arg-type]
            description=text["description"],  # type: ignore[arg-type]
            share_type_id=type_ref or None,
            share_network_id=network or None,
            availability_zone=text["availability_zone"],  # type: ignore[arg-type]
            metadata=metadata,
            is_public=manila_bool(spec.get("is_public", False), "is_public"),
            snapshot_id=snapshot_id,
        )
        return JSONResponse({"share": _share_view(ctx, session, share)})


@router.get("")
def index(ctx: Ctx, request: Request) -> JSONResponse:
    with session_scope() as session:
        shares = _visible(ctx, request, session)
        return JSONResponse({"shares": [views.share_summary(ctx, s) for s in shares]})


@router.get("/detail")
def detail(ctx: Ctx, request: Request) -> JSONResponse:
    with session_scope() as session:
        shares = _visible(ctx, request, session)
        types = {t.id: t for t in session.scalars(select(ShareType))}
        return JSONResponse(
            {
                "shares": [
                    views.share_detail(
                        ctx,
                        s,
                        types[s.share_type_id],
                        None if ctx.at_least("2.9") else export_locations(session, s.id),
                    )
                    for s in shares
                ]
            }
        )


@router.get("/{share_id}")
def show(ctx: Ctx, share_id: str) -> JSONResponse:
    with session_scope() as session:
        share = get_share(session, share_id, ctx.visible_project)
        return JSONResponse({"share": _share_view(ctx, session, share)})


@router.delete("/{share_id}")
def delete(ctx: Ctx, share_id: str) -> Response:
    try:
        with session_scope() as session:
            delete_share(session, share_id, ctx.visible_project)
    except InvalidStateError as exc:
        # Manila answers 403 when a share cannot be deleted in its current state.
        raise Fault(403, str(exc)) from None
    return Response(status_code=202)


@router.get("/{share_id}/export_locations")
def export_location_list(ctx: Ctx, share_id: str) -> JSONResponse:
    ctx.require(EXPORT_LOCATIONS, "export_locations")
    with session_scope() as session:
        get_share(session, share_id, ctx.visible_project)
        locs = [
            views.export_location(ctx, loc)
            for loc in export_locations(session, share_id)
            if ctx.is_admin or not loc.is_admin_only
        ]
    return JSONResponse({"export_locations": locs})


@router.get("/{share_id}/export_locations/{export_id}")
def export_location_show(ctx: Ctx, share_id: str, export_id: str) -> JSONResponse:
    ctx.require(EXPORT_LOCATIONS, "export_locations")
    with session_scope() as session:
        get_share(session, share_id, ctx.visible_project)
        for loc in export_locations(session, share_id):
            if loc.id == export_id and (ctx.is_admin or not loc.is_admin_only):
                return JSONResponse({"export_location": views.export_location(ctx, loc)})
    raise Fault(404, f"Export location {export_id} not found for share {share_id}.")


@router.post("/{share_id}/action")
def action(ctx: UncheckedCtx, share_id: str, raw: RawBody) -> Response:
    return dispatch(ctx, share_id, raw)


@router.get("/{share_id}/migration-progress")
def migration_progress(ctx: Ctx, share_id: str) -> Response:
    return progress_get(ctx, share_id)

"""Share snapshots: create, show, list, delete."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse, Response

from api_shim import views
from api_shim.bodies import JsonObject, invalid, member
from api_shim.context import Ctx, RequestContext
from api_shim.faults import Fault
from api_shim.versions import VersionRange, v
from storage.db import session_scope
from storage.errors import InvalidStateError
from storage.models import Share, Snapshot
from storage.shares import create_snapshot, delete_snapshot, get_snapshot, list_snapshots
from storage.snapshot_metadata import check_metadata, delete_item, get_metadata, set_metadata

router = APIRouter(prefix="/v2/snapshots")


def _view(ctx: RequestContext, session: Session, snap: Snapshot) -> dict[str, object]:
    return views.snapshot(ctx, snap, session.get(Share, snap.share_id))


def _visible(ctx: RequestContext, session: Session) -> list[Snapshot]:
    snaps = list_snapshots(session)
    return snaps if ctx.is_admin else [s for s in snaps if s.project_id == ctx.project_id]


@router.post("")
def create(ctx: Ctx, body: JsonObject) -> JSONResponse:
    spec = member(body, "snapshot", '{"snapshot": {"share_id": "<share id>"}}')
    share_id = spec.get("share_id")
    if not isinstance(share_id, str):
        raise invalid("share_id", share_id, "share_id is required: the share to snapshot.")
    name, description = spec.get("name"), spec.get("description")
    if not isinstance(name, str | None) or not isinstance(description, str | None):
        raise Fault(400, "Invalid input: name and description must be strings or null.")
    # Below 2.73 Manila ignores a metadata member, as it ignores any unknown key.
    metadata = check_metadata(spec.get("metadata") or {}) if ctx.at_least("2.73") else {}
    with session_scope() as session:
        snap = create_snapshot(
            session,
            share_id,
            name=name,
            description=description,
            project_id=ctx.visible_project,
            metadata=metadata,
        )
        return JSONResponse({"snapshot": _view(ctx, session, snap)}, status_code=202)


@router.get("")
def index(ctx: Ctx) -> JSONResponse:
    with session_scope() as session:
        return JSONResponse(
            {
                "snapshots": [
                    {"id": s.id, "name": s.name, "links": _view(ctx, session, s)["links"]}
                    for s in _visible(ctx, session)
                ]
            }
        )


@router.get("/detail")
def detail(ctx: Ctx) -> JSONResponse:
    with session_scope() as session:
        return JSONResponse({"snapshots": [_view(ctx, session, s) for s in _visible(ctx, session)]})


@router.get("/{snapshot_id}")
def show(ctx: Ctx, snapshot_id: str) -> JSONResponse:
    with session_scope() as session:
        snap = get_snapshot(session, snapshot_id, ctx.visible_project)
        return JSONResponse({"snapshot": _view(ctx, session, snap)})


@router.delete("/{snapshot_id}")
def delete(ctx: Ctx, snapshot_id: str) -> Response:
    try:
        with session_scope() as session:
            delete_snapshot(session, snapshot_id, ctx.visible_project)
    except InvalidStateError as exc:
        raise Fault(403, str(exc)) from None
    return Response(status_code=202)


METADATA = (VersionRange(v("2.73")),)
META_EXAMPLE = '{"metadata": {"purpose": "nightly"}}'


def _metadata_body(body: dict[str, object]) -> object:
    if "metadata" not in body:
        raise Fault(400, f"Malformed request body: expected {META_EXAMPLE}.")
    return body["metadata"]


@router.get("/{snapshot_id}/metadata")
def metadata_index(ctx: Ctx, snapshot_id: str) -> JSONResponse:
    ctx.require(METADATA, "snapshot metadata")
    with session_scope() as session:
        return JSONResponse({"metadata": get_metadata(session, snapshot_id, ctx.visible_project)})


@router.post("/{snapshot_id}/metadata")
def metadata_merge(ctx: Ctx, snapshot_id: str, body: JsonObject) -> JSONResponse:
    ctx.require(METADATA, "snapshot metadata")
    value = _metadata_body(body)
    with session_scope() as session:
        merged = set_metadata(session, snapshot_id, value, ctx.visible_project, replace=False)
    return JSONResponse({"metadata": merged})


@router.put("/{snapshot_id}/metadata")
def metadata_replace(ctx: Ctx, snapshot_id: str, body: JsonObject) -> JSONResponse:
    ctx.require(METADATA, "snapshot metadata")
    value = _metadata_body(body)
    with session_scope() as session:
        replaced = set_metadata(session, snapshot_id, value, ctx.visible_project, replace=True)
    return JSONResponse({"metadata": replaced})


@router.get("/{snapshot_id}/metadata/{key}")
def metadata_show(ctx: Ctx, snapshot_id: str, key: str) -> JSONResponse:
    ctx.require(METADATA, "snapshot metadata")
    with session_scope() as session:
        found = get_metadata(session, snapshot_id, ctx.visible_project)
    if key not in found:
        raise Fault(404, f"Metadata item {key} was not found for snapshot {snapshot_id}.")
    return JSONResponse({"meta": {key: found[key]}})


@router.put("/{snapshot_id}/metadata/{key}")
def metadata_set_item(ctx: Ctx, snapshot_id: str, key: str, body: JsonObject) -> JSONResponse:
    ctx.require(METADATA, "snapshot metadata")
    meta = body.get("meta")
    if not isinstance(meta, dict) or list(meta) != [key]:
        raise Fault(
            400, f'Malformed request body: send {{"meta": {{"{key}": "<value>"}}}} (one item).'
        )
    with session_scope() as session:
        set_metadata(session, snapshot_id, meta, ctx.visible_project, replace=False)
    return JSONResponse({"meta": meta})


@router.delete("/{snapshot_id}/metadata/{key}")
def metadata_delete(ctx: Ctx, snapshot_id: str, key: str) -> Response:
    ctx.require(METADATA, "snapshot metadata")
    with session_scope() as session:
        delete_item(session, snapshot_id, key, ctx.visible_project)
    return Response(status_code=200)

"""Share snapshots: create, show, list, delete."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse, Response

from api_shim import views
from api_shim.bodies import JsonObject, invalid, member
from api_shim.context import Ctx, RequestContext
from api_shim.faults import Fault
from storage.db import session_scope
from storage.errors import InvalidStateError
from storage.models import Share, Snapshot
from storage.shares import create_snapshot, delete_snapshot, get_snapshot, list_snapshots

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
    with session_scope() as session:
        snap = create_snapshot(
            session, share_id, name=name, description=description, project_id=ctx.visible_project
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

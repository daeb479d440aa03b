"""`/types/{id}/extra_specs`: what `manila type-key` and `openstack share type set
--extra-specs` call, with Manila's policy rules, validation and answers."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from api_shim.bodies import JsonObject
from api_shim.context import Ctx
from api_shim.faults import Fault
from storage.catalog import get_share_type, set_extra_specs, unset_extra_spec
from storage.db import session_scope
from storage.type_specs import DHSS, check_extra_specs

router = APIRouter(prefix="/v2/types/{type_id}/extra_specs")
EXAMPLE = '{"extra_specs": {"snapshot_support": "True"}}'


@router.get("")
def index(ctx: Ctx, type_id: str) -> JSONResponse:
    ctx.authorize("share_types_extra_spec:index")
    with session_scope() as session:
        specs = get_share_type(session, type_id).extra_specs
        return JSONResponse({"extra_specs": {k: str(v) for k, v in specs.items()}})


@router.post("")
def create(ctx: Ctx, type_id: str, body: JsonObject) -> JSONResponse:
    ctx.authorize("share_types_extra_spec:create")
    specs = body.get("extra_specs")
    if not isinstance(specs, dict):
        raise Fault(400, f"Malformed request body: expected {EXAMPLE}.")
    with session_scope() as session:
        get_share_type(session, type_id)  # 404 before 400, as Manila checks
        checked = check_extra_specs(specs, require_all=False)
        set_extra_specs(session, type_id, checked)
    # Manila echoes the request (bools stay bools), zone lists trimmed.
    return JSONResponse({"extra_specs": {**specs, **_trimmed(checked)}})


def _trimmed(checked: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in checked.items() if k == "availability_zones"}


@router.get("/{key}")
def show(ctx: Ctx, type_id: str, key: str) -> JSONResponse:
    ctx.authorize("share_types_extra_spec:show")
    with session_scope() as session:
        specs = get_share_type(session, type_id).extra_specs
    if key not in specs:
        raise Fault(404, f"Share Type {type_id} has no extra specs with key {key}.")
    return JSONResponse({key: str(specs[key])})


@router.put("/{key}")
def update(ctx: Ctx, type_id: str, key: str, body: JsonObject) -> JSONResponse:
    ctx.authorize("share_types_extra_spec:update")
    if not body:
        raise Fault(400, f'Request body empty; send {{"{key}": "<value>"}}.')
    with session_scope() as session:
        get_share_type(session, type_id)
        if key not in body:
            raise Fault(400, f'Request body and URI mismatch: send {{"{key}": "<value>"}}.')
        if len(body) > 1:
            raise Fault(400, f'Request body contains too many items: send only {{"{key}": …}}.')
        checked = check_extra_specs(body, require_all=False)
        set_extra_specs(session, type_id, checked)
    return JSONResponse({**body, **_trimmed(checked)})


@router.delete("/{key}")
def delete(ctx: Ctx, type_id: str, key: str) -> Response:
    ctx.authorize("share_types_extra_spec:delete")
    with session_scope() as session:
        get_share_type(session, type_id)
        # Before 2.24 snapshot_support was required as well.
        if key == DHSS or (key == "snapshot_support" and not ctx.at_least("2.24")):
            raise Fault(403, f"Extra spec '{key}' can't be deleted.")
        unset_extra_spec(session, type_id, key)
    return Response(status_code=202)

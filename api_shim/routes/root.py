"""Version discovery: `GET /` (no auth, 300) and `GET /v2/` (authenticated, 200)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from api_shim.context import Ctx
from api_shim.versions import version_document

router = APIRouter()


@router.get("/")
def root(request: Request) -> JSONResponse:
    # Clients derive this URL by cutting the endpoint at /v2 and send their token and version
    # headers along; any status >= 400 here breaks `openstack share ...` entirely.
    return JSONResponse(version_document(str(request.base_url)), status_code=300)


@router.get("/v2")
@router.get("/v2/")
def v2(ctx: Ctx) -> JSONResponse:
    return JSONResponse(version_document(ctx.base_url))

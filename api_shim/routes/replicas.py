"""`GET /share-replicas` (and `/detail`): always empty, since sharemig has no replication.

Tempest's clean-up lists a share's replicas before deleting it; a 404 here makes it leave the
share behind, so the listing answers at every version.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse

from api_shim.context import Ctx

router = APIRouter(prefix="/v2/share-replicas")


@router.get("")
@router.get("/detail")
def index(ctx: Ctx) -> JSONResponse:
    return JSONResponse({"share_replicas": []})

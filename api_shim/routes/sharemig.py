"""sharemig's own admin routes, under `/v2/{project_id}/sharemig/` (not Manila's API)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from api_shim.context import Ctx
from storage.migration_report import entry_rows, json_chunks, share_summary

router = APIRouter(prefix="/v2/sharemig")


@router.get("/shares/{share_id}/report")
async def report(ctx: Ctx, share_id: str) -> StreamingResponse:
    """The JSON of `sharemig report SHARE`, streamed; admin only; 404 without a manifest."""
    ctx.require_admin()
    summary, job_id = await run_in_threadpool(share_summary, share_id)
    return StreamingResponse(
        json_chunks(summary, entry_rows(job_id)), media_type="application/json"
    )

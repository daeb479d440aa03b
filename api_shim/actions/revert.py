"""`revert` (2.27+): a share back to its latest snapshot, as Manila's action."""

from __future__ import annotations

from starlette.responses import Response

from api_shim.context import RequestContext
from api_shim.faults import Fault
from api_shim.versions import VersionRange, v
from storage.db import session_scope
from storage.share_revert import revert_to_snapshot

SINCE = (VersionRange(v("2.27")),)


def revert(ctx: RequestContext, share_id: str, value: object) -> Response:
    ctx.require(SINCE, "revert")
    if not isinstance(value, dict):
        raise Fault(
            400,
            'Revert entity not found in request body: send {"revert": {"snapshot_id": "<id>"}}.',
        )
    if "snapshot_id" not in value:
        raise Fault(400, "Required parameter snapshot_id not found.")
    snapshot_id = value["snapshot_id"]
    if not snapshot_id:
        raise Fault(400, "Required parameter snapshot_id is empty.")
    if not isinstance(snapshot_id, str):
        raise Fault(400, "Invalid input: snapshot_id must be a string (a snapshot's id).")
    with session_scope() as session:
        revert_to_snapshot(session, share_id, snapshot_id, ctx.visible_project)
    return Response(status_code=202)

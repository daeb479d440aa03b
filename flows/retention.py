"""The rollback window in Prefect: the expiry run at a retained instance's deadline, and the
`rollback-share` deployment (the same rollback `sharemig rollback` starts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from prefect import flow, get_run_logger

from storage import retention
from storage.db import session_scope
from storage.models import Migration
from storage.models.base import aware

EXPIRY_DEPLOYMENT = "expire-retained/expire-retained"


def schedule_expiry(migration_id: str, deadline: datetime) -> None:
    """A run of `expire-retained` at the deadline; the idempotency key makes a retried
    switchover find it instead of adding a second. A run that never happens (no worker, a
    server reset) is made up for by `sharemig up`'s recovery pass."""
    from prefect.deployments import run_deployment

    with session_scope() as s:
        mig = s.get(Migration, migration_id)
        instance_id = mig.source_instance_id if mig is not None else None
    cast(Any, run_deployment)(
        EXPIRY_DEPLOYMENT,
        parameters={"instance_id": instance_id},
        scheduled_time=aware(deadline),
        timeout=0,
        as_subflow=False,
        idempotency_key=f"{instance_id}:expiry",
        _sync=True,
    )


@flow(name="expire-retained", persist_result=False)
def expire_retained(instance_id: str | None = None) -> list[str]:
    """Delete the retained instance (every due one when None) once its window has passed."""
    deleted = retention.expire_retained(instance_id)
    get_run_logger().info("retained instances deleted: %s", deleted or "none due")
    return deleted


@flow(name="rollback-share", persist_result=False)
def rollback_share(share_id: str) -> str:
    """Move SHARE back onto the instance its last switchover retained (no approval wait)."""
    from flows.control import start_rollback

    outcome = start_rollback(share_id)
    get_run_logger().info(
        "rollback of share %s: migration %s, run %s",
        share_id,
        outcome.migration_id,
        outcome.flow_run_id,
    )
    return str(outcome.migration_id)

"""Prefect flow runs of the service: their state, their processes, and a start request."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from cli.supervisor import pids_with_env
from tests.kit.manila_api import NOTHING_PRESERVED


def run_state(run_id: str) -> Any:
    """The flow run's current Prefect state."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id)).state


def processes_for_run(run_id: str) -> list[int]:
    """Pids of live processes executing flow run `run_id` (the worker sets it in their env)."""
    return pids_with_env("PREFECT__FLOW_RUN_ID", run_id)


def start_request(host: str, **flags: bool) -> Any:
    """The `flows.control.StartRequest` of a migration to `host`, every flag False but `flags`."""
    from flows.control import StartRequest

    return StartRequest(host=host, **{**NOTHING_PRESERVED, **flags})

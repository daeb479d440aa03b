"""Apply `prefect.yaml`: create the work pool if missing, then create or update each deployment.

Used by `sharemig up` and by the tests, so both run exactly what the file says. The file is
validated strictly first (Prefect itself ignores unknown keys silently).
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from pydantic import BaseModel, ConfigDict, Field

from storage.errors import InvalidInputError

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"
WARM_COMMAND = shlex.join([sys.executable, "-m", "flows.warm_launch"])
"""Every deployment's flow-run command, unless prefect.yaml sets one: a warm start from the
worker's zygote (`flows/zygote.py`), else Prefect's plain engine. The interpreter is the one
applying the file (`sharemig up`'s); a worker host with sharemig elsewhere sets `command`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class WorkPoolSpec(_Strict):
    name: str
    work_queue_name: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)


class ScheduleSpec(_Strict):
    cron: str
    timezone: str = "UTC"
    active: bool = True


class DeploymentSpec(_Strict):
    name: str
    entrypoint: str
    description: str | None = None
    version: str | None = None
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    schedules: list[ScheduleSpec] = Field(default_factory=list)
    concurrency_limit: int | None = None
    work_pool: WorkPoolSpec


class ProjectSpec(_Strict):
    name: str
    prefect_version: str = Field(alias="prefect-version")
    build: list[dict[str, Any]] | None = None
    push: list[dict[str, Any]] | None = None
    pull: list[dict[str, Any]] | None = None
    deployments: list[DeploymentSpec]


def load_project(path: Path = PREFECT_YAML) -> ProjectSpec:
    """Parse and validate prefect.yaml; unknown keys are errors that name the key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return ProjectSpec.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise InvalidInputError(f"{path} is not a valid sharemig prefect.yaml:\n{exc}") from None


def ensure_work_pool(name: str) -> None:
    """A `process` work pool named `name` (left as it is when it exists)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return
        except ObjectNotFound:
            pass
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                    description="sharemig flow runs (process worker: `sharemig up`)",
                )
            )


def apply_deployments(
    path: Path = PREFECT_YAML, *, work_pool: str | None = None
) -> dict[str, UUID]:
    """Create or update every deployment in `path`; returns `flow/deployment` -> id.

    Schedules are created with the deployment and then left alone, so an operator who
    enabled (or changed) a schedule keeps it when `sharemig up` applies the file again.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate, DeploymentUpdate
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.exceptions import ObjectNotFound
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    project = load_project(path)
    ids: dict[str, UUID] = {}
    for pool in {work_pool or d.work_pool.name for d in project.deployments}:
        ensure_work_pool(pool)
    with get_client(sync_client=True) as client:
        for spec in project.deployments:
            flow: Any = load_flow_from_entrypoint(spec.entrypoint)
            schema = parameter_schema(flow.fn).model_dump_for_openapi()
            variables = {"command": WARM_COMMAND, **spec.work_pool.job_variables}
            # The pull step only stops Prefect's default command from copying the worker's
            # directory; with a command set the run starts in an empty one, and the step's
            # own API traffic (~0.5 s per start) is saved.
            warm = variables["command"] == WARM_COMMAND
            pull_steps = [] if warm else list(project.pull or [])
            common: dict[str, Any] = {
                "entrypoint": spec.entrypoint,
                "work_pool_name": work_pool or spec.work_pool.name,
                "work_queue_name": spec.work_pool.work_queue_name,
                "job_variables": variables,
                "parameters": dict(spec.parameters),
                "description": spec.description,
                "tags": list(spec.tags),
                "version": spec.version,
                "parameter_openapi_schema": schema,
                "enforce_parameter_schema": True,
                "pull_steps": pull_steps,
                "concurrency_limit": spec.concurrency_limit,
            }
            full_name = f"{flow.name}/{spec.name}"
            try:
                existing = client.read_deployment_by_name(full_name)
            except ObjectNotFound:
                existing = None
            if existing is None:
                ids[full_name] = client.create_deployment(
                    flow_id=client.create_flow_from_name(flow.name),
                    name=spec.name,
                    schedules=[
                        DeploymentScheduleCreate(
                            schedule=CronSchedule(cron=s.cron, timezone=s.timezone),
                            active=s.active,
                        )
                        for s in spec.schedules
                    ],
                    **common,
                )
            else:
                client.update_deployment(existing.id, DeploymentUpdate(**common))
                ids[full_name] = existing.id
    return ids

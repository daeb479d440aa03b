"""The API shim's app factory: Manila's share API subset over sharemig's storage and flows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from api_shim import faults
from api_shim.metrics import Metrics, RequestTimer
from api_shim.pipeline import ManilaPipeline
from api_shim.policy import Policy
from api_shim.routes import (
    access,
    catalog,
    replicas,
    root,
    sharemig,
    shares,
    snapshots,
    type_specs,
)
from storage.settings import get_settings
from storage.tokens import lookup_token


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    from storage.bootstrap import prepare_database

    await run_in_threadpool(prepare_database)
    yield


def create_app() -> FastAPI:
    """A new app; the database is prepared when the server starts it, not here."""
    app = FastAPI(
        title="sharemig API (Manila share API subset)",
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    faults.install(app)
    for module in (root, shares, snapshots, catalog, type_specs, access, replicas, sharemig):
        app.include_router(module.router)
    metrics = Metrics()
    # Outside /v2, without a token, like most exporters: scrape it from the monitoring network.
    app.add_route("/metrics", metrics.response, methods=["GET"], include_in_schema=False)
    # Inside the pipeline, which strips the project segment: routes are timed by template.
    app.add_middleware(RequestTimer, metrics=metrics)
    settings = get_settings()
    policy = Policy(settings.policy_path)
    if settings.auth == "keystone":
        from api_shim.keystone_auth import KeystoneTokens

        keystone = KeystoneTokens(settings)
        app.add_middleware(
            ManilaPipeline,
            lookup=keystone,
            blocking=True,
            hint=keystone.hint,
            www_authenticate=keystone.www_authenticate,
            policy=policy,
        )
    else:
        app.add_middleware(ManilaPipeline, lookup=lookup_token, policy=policy)
    return app

"""The one place errors become Manila fault bodies: `{"<faultName>": {"code": N, "message": M}}`."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, PlainTextResponse, Response

from storage.errors import (
    CapacityError,
    ConflictError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    SharemigError,
    TransientError,
)

log = logging.getLogger("sharemig.api")

FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    501: "notImplemented",
    503: "serviceUnavailable",
}
NOT_FOUND = "The resource could not be found."
ROUTING_NOT_FOUND = (
    "404 Not Found\n\nThe resource could not be found. Check the URL: sharemig serves "
    "Manila's /v2/{project_id}/... paths (see GET / for the API versions).\n"
)


class Fault(Exception):
    """An HTTP error with a Manila fault body; raised by routes, rendered by `install`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def fault_name(status: int) -> str:
    """Manila's fault key; statuses without an entry (406, 500, ...) are `computeFault`."""
    return FAULT_NAMES.get(status, "computeFault")


# When a 503 says nothing more precise: long enough for a restart or a burst to pass.
RETRY_AFTER_S = 5


def fault_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {fault_name(status): {"code": status, "message": message}},
        status_code=status,
        headers=headers,
    )


def status_for(exc: SharemigError) -> int:
    """HTTP status of a storage error, as Manila answers the equivalent exception."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, InvalidInputError | InvalidStateError | CapacityError):
        return 400
    if isinstance(exc, TransientError):
        return 503
    return 400


async def _fault(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Fault)
    return fault_response(exc.status, exc.message)


async def _sharemig_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, SharemigError)
    status = status_for(exc)
    message = str(exc)
    if status != 503:
        return fault_response(status, message)
    message += " The request was not carried out; retry it once the service is back."
    retry_after = math.ceil(getattr(exc, "retry_after_s", RETRY_AFTER_S))
    return fault_response(status, message, {"Retry-After": str(retry_after)})


async def _validation_error(_: Request, exc: Exception) -> Response:
    # FastAPI's own 422 never leaks: query or path parameters that fail become a 400 fault.
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    )
    return fault_response(400, f"Invalid request: {problems}")


async def _routing_error(_: Request, exc: Exception) -> Response:
    # Routing-level misses (unknown path, or a method the path does not have) are plain-text
    # 404s in the reference, not JSON faults (contract §1, §3).
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (404, 405):
        return PlainTextResponse(ROUTING_NOT_FOUND, status_code=404)
    return fault_response(exc.status_code, str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error answering %s %s", request.method, request.url.path)
    return fault_response(
        500,
        "The server has either erred or is incapable of performing the requested operation. "
        "The error is logged by the sharemig API; report it with the request id.",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(Fault, _fault)
    app.add_exception_handler(SharemigError, _sharemig_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _routing_error)
    app.add_exception_handler(Exception, _unexpected)

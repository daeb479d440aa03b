"""The ASGI layer in front of the routes: request ids, token auth, microversion negotiation.

Order (contract §2.2): authentication, then the version header (400 malformed, 406 out of
range), then the routes. The optional `/{project_id}` segment is taken out of the path here,
so each route is declared once and serves both URL forms.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_shim.faults import fault_name
from api_shim.policy import Policy
from api_shim.versions import (
    DEFAULT_VERSION,
    EXPERIMENTAL_HEADER,
    MAX_VERSION,
    MIN_VERSION,
    VERSION_HEADER,
    experimental_flag,
    parse_version,
)
from storage.errors import TransientError
from storage.tokens import TokenInfo

# First path segments under /v2 that are collections, i.e. URLs without a project segment.
COLLECTIONS = frozenset(
    {
        "shares",
        "snapshots",
        "types",
        "share-networks",
        "scheduler-stats",
        "share-access-rules",
        "sharemig",
    }
)
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

TokenLookup = Callable[[str | None], TokenInfo | None]
"""Who a token speaks for, None for a token to refuse (401); TransientError when the
authority cannot answer (503)."""
TOKENS_HINT = "Create a token with `sharemig token create --project <project> [--admin]`."


def _json_bytes(body: object) -> bytes:
    return json.dumps(body).encode()


class ManilaPipeline:
    def __init__(
        self,
        app: ASGIApp,
        lookup: TokenLookup,
        *,
        blocking: bool = False,
        hint: str = TOKENS_HINT,
        www_authenticate: str | None = None,
        policy: Policy | None = None,
    ) -> None:
        """`blocking`: `lookup` does network I/O, so it runs in a worker thread."""
        self.app = app
        self.lookup = lookup
        self.blocking = blocking
        self.hint = hint
        self.www_authenticate = www_authenticate
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = time.monotonic()  # a request's time budget counts from here
        request_id = f"req-{uuid.uuid4()}"
        extra = [("x-compute-request-id", request_id), ("x-openstack-request-id", request_id)]
        path: str = scope["path"]
        if path != "/v2" and not path.startswith("/v2/"):
            await self.app(scope, receive, self._with_headers(send, extra))
            return

        headers = Headers(scope=scope)
        token = headers.get("x-auth-token")
        try:
            if self.blocking:
                caller = await run_in_threadpool(self.lookup, token)
            else:
                caller = self.lookup(token)
        except TransientError as exc:
            message = f"{exc} The request was not carried out; retry it once it is back."
            await self._reply(send, 503, self._fault(503, message), [*extra, ("Retry-After", "5")])
            return
        if caller is None:
            refused = list(extra)
            if self.www_authenticate:
                refused.append(("WWW-Authenticate", self.www_authenticate))
            await self._reply(send, 401, self._unauthorized(headers, self.hint), refused)
            return
        raw = headers.get(VERSION_HEADER)
        version = DEFAULT_VERSION if raw is None else parse_version(raw.strip())
        if version is None:
            message = (
                f"API Version String {raw} is of invalid format. Must be of format "
                "MajorNum.MinorNum (for example 2.65)."
            )
            await self._reply(send, 400, self._fault(400, message), extra)
            return
        extra += [(VERSION_HEADER, str(version)), ("Vary", VERSION_HEADER)]
        if not MIN_VERSION <= version <= MAX_VERSION:
            message = (
                f"Version {version} is not supported by the API. Minimum is {MIN_VERSION} "
                f"and maximum is {MAX_VERSION}."
            )
            await self._reply(send, 406, self._fault(406, message), extra)
            return
        experimental = experimental_flag(headers.get(EXPERIMENTAL_HEADER))
        if experimental:
            extra.append((EXPERIMENTAL_HEADER, "True"))

        url_project = None
        parts = path.split("/", 3)  # ["", "v2", first, rest]
        if len(parts) == 4 and parts[2] not in COLLECTIONS and _PROJECT_RE.match(parts[2]):
            url_project = parts[2]
            scope = dict(scope)
            scope["path"] = "/v2/" + parts[3]
            scope["raw_path"] = scope["path"].encode()
        state = scope.setdefault("state", {})
        state.update(
            api_version=version,
            experimental=experimental,
            caller=caller,
            url_project=url_project,
            arrived=arrived,
            policy=self.policy,
        )
        await self.app(scope, receive, self._with_headers(send, extra))

    @staticmethod
    def _with_headers(send: Send, extra: list[tuple[str, str]]) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra:
                    headers.append(name, value)
            await send(message)

        return wrapped

    @staticmethod
    def _fault(status: int, message: str) -> bytes:
        return _json_bytes({fault_name(status): {"code": status, "message": message}})

    @staticmethod
    def _unauthorized(headers: Headers, hint: str) -> bytes:
        why = "was rejected" if headers.get("x-auth-token") else "is missing"
        message = (
            f"The request you have made requires authentication: the X-Auth-Token header {why}. "
            + hint
        )
        return _json_bytes({"error": {"code": 401, "title": "Unauthorized", "message": message}})

    @staticmethod
    async def _reply(send: Send, status: int, body: bytes, extra: list[tuple[str, str]]) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), val.encode()) for k, val in extra),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

"""Who is asking, at which microversion: read from what the pipeline put on the request."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api_shim.faults import NOT_FOUND, Fault
from api_shim.policy import Policy
from api_shim.versions import APIVersion, VersionRange, ranges_text, v
from storage.tokens import TokenInfo

FORBIDDEN = "Access was denied to this resource."


@dataclass(frozen=True)
class RequestContext:
    version: APIVersion
    experimental: bool
    caller: TokenInfo
    url_project: str | None
    base_url: str
    arrived: float = 0.0
    """`time.monotonic()` when the request reached the shim: time budgets count from it."""
    policy: Policy | None = None

    @property
    def is_admin(self) -> bool:
        """Manila's `context.is_admin`: the `context_is_admin` rule (role admin by default)."""
        if self.policy is None:
            return self.caller.is_admin
        return self.policy.is_admin(self.caller)

    @property
    def project_id(self) -> str:
        return self.caller.project_id

    @property
    def visible_project(self) -> str | None:
        """Project filter for lookups: admins see every project's shares (as in Manila)."""
        return None if self.is_admin else self.caller.project_id

    def at_least(self, version: str) -> bool:
        return self.version >= v(version)

    def require(self, ranges: tuple[VersionRange, ...], what: str) -> None:
        """404 unless a handler serves this version / experimental combination (§2.2)."""
        if not any(r.matches(self.version, self.experimental) for r in ranges):
            raise Fault(
                404,
                f"{NOT_FOUND} {what} is not available at API version {self.version}"
                + (" (experimental)" if self.experimental else "")
                + f"; it needs {ranges_text(ranges)}.",
            )

    def allows(self, rule: str) -> bool:
        """What the policy (Manila's defaults and the operator's policy.yaml) says of `rule`."""
        return (
            self.caller.is_admin if self.policy is None else self.policy.allows(rule, self.caller)
        )

    def authorize(self, rule: str) -> None:
        """403 unless the policy allows `rule` for this token."""
        if not self.allows(rule):
            raise Fault(403, f"{FORBIDDEN} Policy rule {rule} does not allow this token's roles.")

    def require_admin(self) -> None:
        """The `context_is_admin` rule; a handler with a Manila rule of its own uses `authorize`."""
        if not self.allows("context_is_admin"):
            raise Fault(
                403,
                f"{FORBIDDEN} This operation needs a token with the admin role "
                "(policy rule context_is_admin).",
            )

    def check_project(self) -> None:
        if self.url_project is not None and self.url_project != self.caller.project_id:
            raise Fault(
                400,
                f"Malformed request url: project {self.url_project} in the URL does not match "
                f"the token's project {self.caller.project_id}.",
            )

    def href(self, *parts: str, bookmark: bool = False) -> str:
        prefix = "" if bookmark else "/v2"
        return f"{self.base_url.rstrip('/')}{prefix}/{self.project_id}/" + "/".join(parts)


def _context(request: Request) -> RequestContext:
    state = request.scope["state"]
    return RequestContext(
        version=state["api_version"],
        experimental=state["experimental"],
        caller=state["caller"],
        url_project=state["url_project"],
        base_url=str(request.base_url),
        arrived=state.get("arrived", time.monotonic()),
        policy=state.get("policy"),
    )


def _checked_context(request: Request) -> RequestContext:
    ctx = _context(request)
    ctx.check_project()
    return ctx


UncheckedCtx = Annotated[RequestContext, Depends(_context)]
"""For the action endpoint, which frames the body before checking the URL's project (§4)."""
Ctx = Annotated[RequestContext, Depends(_checked_context)]

"""Manila host strings: `host@backend#pool`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from storage.errors import InvalidInputError

_PART = r"[A-Za-z0-9][A-Za-z0-9_.:-]*"
HOST_RE = re.compile(rf"^(?P<host>{_PART})@(?P<backend>{_PART})(?:#(?P<pool>{_PART}))?$")


@dataclass(frozen=True)
class HostName:
    host: str
    backend: str
    pool: str | None

    @property
    def service(self) -> str:
        return f"{self.host}@{self.backend}"

    def __str__(self) -> str:
        return self.service + (f"#{self.pool}" if self.pool else "")


def parse_host(value: str, *, require_pool: bool = False) -> HostName:
    """Parse `host@backend#pool`; raise `InvalidInputError` with the expected form otherwise."""
    m = HOST_RE.match(value or "")
    if not m:
        raise InvalidInputError(
            f"host {value!r} is not of the form 'host@backend#pool' "
            "(letters, digits, '_', '.', ':' and '-' in each part)"
        )
    if require_pool and not m["pool"]:
        raise InvalidInputError(f"host {value!r} names no pool; use 'host@backend#pool'")
    return HostName(m["host"], m["backend"], m["pool"])

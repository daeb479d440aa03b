"""Manila microversions: parsing, the served range, per-operation ranges and version documents."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

VERSION_HEADER = "X-OpenStack-Manila-API-Version"
EXPERIMENTAL_HEADER = "X-OpenStack-Manila-API-Experimental"
_VERSION_RE = re.compile(r"^([1-9][0-9]*)\.([1-9][0-9]*|0)$")
_TRUE_WORDS = frozenset({"1", "t", "true", "on", "y", "yes"})


class APIVersion(NamedTuple):
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


def v(text: str) -> APIVersion:
    """A version literal, for tables in code (`v("2.29")`)."""
    parsed = parse_version(text)
    if parsed is None:
        raise ValueError(text)
    return parsed


def parse_version(text: str) -> APIVersion | None:
    """`MAJOR.MINOR` exactly as Manila accepts it (no `latest`, no leading zeros), else None."""
    m = _VERSION_RE.match(text)
    return APIVersion(int(m[1]), int(m[2])) if m else None


def experimental_flag(value: str | None) -> bool:
    """Manila reads the experimental header leniently: unknown words mean false, not an error."""
    return value is not None and value.strip().lower() in _TRUE_WORDS


MIN_VERSION = v("2.0")
MAX_VERSION = v("2.99")
DEFAULT_VERSION = MIN_VERSION
"""A request without the header is 2.0, not the newest (contract §2.2)."""


@dataclass(frozen=True)
class VersionRange:
    """One handler's versions; an experimental one needs the experimental header too."""

    min: APIVersion
    max: APIVersion = MAX_VERSION
    experimental: bool = False

    def matches(self, version: APIVersion, experimental: bool) -> bool:
        return self.min <= version <= self.max and (experimental or not self.experimental)

    def describe(self) -> str:
        text = f"{self.min}-{self.max}" if self.max != MAX_VERSION else f"{self.min} or later"
        return f"{text} with '{EXPERIMENTAL_HEADER}: True'" if self.experimental else text


def ranges_text(ranges: tuple[VersionRange, ...]) -> str:
    return " or ".join(r.describe() for r in ranges)


# The migration actions: experimental from 2.22 (start from 2.29), graduated at 2.96 (§2.3).
MIGRATION_START = (VersionRange(v("2.29"), v("2.95"), True), VersionRange(v("2.96")))
MIGRATION_ACTION = (VersionRange(v("2.22"), v("2.95"), True), VersionRange(v("2.96")))
PROGRESS_ACTION = (VersionRange(v("2.22"), v("2.95"), True), VersionRange(v("2.96"), v("2.97")))
PROGRESS_GET = (VersionRange(v("2.98")),)
ANY_VERSION = (VersionRange(MIN_VERSION),)


def version_document(base_url: str) -> dict[str, object]:
    """The body of `GET /` and `GET /v2/` (contract §12.1)."""
    return {
        "versions": [
            {
                "id": "v2.0",
                "status": "CURRENT",
                "version": str(MAX_VERSION),
                "min_version": str(MIN_VERSION),
                "updated": "2015-08-27T11:33:21Z",
                "links": [
                    {
                        "rel": "describedby",
                        "type": "text/html",
                        "href": "http://docs.openstack.org/",
                    },
                    {"rel": "self", "href": base_url.rstrip("/") + "/v2/"},
                ],
                "media-types": [
                    {
                        "base": "application/json",
                        "type": "application/vnd.openstack.share+json;version=1",
                    }
                ],
            }
        ]
    }

"""Source and destination of a copy: a local directory (fast path) or any fsspec filesystem."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from fsspec.core import url_to_fs

from storage.errors import InvalidInputError


@dataclass(frozen=True)
class Endpoint:
    url: str
    fs: Any
    root: str
    """Root path in the filesystem's own spelling (no protocol, no trailing slash)."""
    local: bool

    @property
    def root_bytes(self) -> bytes:
        return os.fsencode(self.root)

    def local_path(self, rel: bytes) -> bytes:
        return os.path.join(self.root_bytes, rel) if rel else self.root_bytes

    def fs_path(self, rel: bytes) -> str:
        """`rel` joined under the root, as the str path fsspec expects (surrogate-escaped)."""
        if not rel:
            return self.root
        return f"{self.root}/{os.fsdecode(rel)}" if self.root else os.fsdecode(rel)


def normalize_url(url: str) -> str:
    """Plain paths become absolute; URLs are kept (so the job id of a re-run is stable)."""
    if "://" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://{rest.rstrip('/') or rest}"
    return os.path.abspath(url)


def open_endpoint(url: str) -> Endpoint:
    """A fresh filesystem instance for `url`: no instance cache, no listings cache.

    Cached instances and listings would let a re-plan see a stale tree.
    """
    url = normalize_url(url)
    try:
        fs, root = url_to_fs(url, skip_instance_cache=True, use_listings_cache=False)
    except (ValueError, ImportError) as exc:
        raise InvalidInputError(f"cannot open {url!r}: {exc}") from exc
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    local = "file" in protocols or "local" in protocols
    root = root.rstrip("/") if root not in ("/", "") else root
    if local:
        root = os.path.abspath(root)
    return Endpoint(url=url, fs=fs, root=root, local=local)

"""Maps a pool's `driver:` name to its driver class."""

from __future__ import annotations

from importlib import import_module

from storage.drivers.base import PoolRef, ShareDriver
from storage.errors import InvalidInputError

DRIVERS: dict[str, str] = {
    "localfs": "storage.drivers.localfs:LocalFsDriver",
    "fsspec": "storage.drivers.fsspec_driver:FsspecDriver",
    "btrfs": "storage.drivers.btrfs:BtrfsDriver",
}


def driver_class(name: str) -> type[ShareDriver]:
    try:
        target = DRIVERS[name]
    except KeyError:
        known = ", ".join(sorted(DRIVERS))
        raise InvalidInputError(f"unknown driver {name!r}; known drivers: {known}") from None
    module, _, attr = target.partition(":")
    cls: type[ShareDriver] = getattr(import_module(module), attr)
    return cls


def get_driver(pool: PoolRef) -> ShareDriver:
    """A driver object serving `pool`."""
    return driver_class(pool.driver)(pool)  # type: ignore[call-arg]

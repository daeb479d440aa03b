"""A local filesystem that breaks on purpose, registered with fsspec as `faulty://`.

Paths are absolute local paths (`faulty:///tmp/x` and `faulty://tmp/x` both mean `/tmp/x`).
Faults come from the module-level `PLAN`: each `Fault` matches a path substring and an
operation, fires `times` times (-1: always), then lets the operation through. Reads and
writes go to the real files underneath, so what reached the disk can be checked afterwards.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

PROTOCOL = "faulty"


@dataclass
class Fault:
    """`op`: read | write | close_read. `kind`: eio | enospc | short | flip | slow | change |
    delete. `change`/`delete` act on the source file while it is being read (kind of op read).
    """

    op: str
    kind: str
    match: str = ""
    times: int = 1
    delay_s: float = 0.0
    fired: int = 0

    def takes(self, op: str, path: str) -> bool:
        if self.op != op or self.match not in path:
            return False
        if self.times != -1 and self.fired >= self.times:
            return False
        self.fired += 1
        return True


@dataclass
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)

    def first(self, op: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.takes(op, path):
                return fault
        return None

    def fired(self) -> int:
        return sum(f.fired for f in self.faults)


PLAN = FaultPlan()


def set_faults(*faults: Fault) -> FaultPlan:
    PLAN.faults = list(faults)
    return PLAN


class FaultyFile:
    """Wraps a real file object; reads and writes pass through `PLAN`."""

    def __init__(self, inner: Any, path: str, mode: str) -> None:
        self._inner = inner
        self._path = path
        self._mode = mode

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> FaultyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, size: int = -1) -> bytes:
        fault = PLAN.first("read", self._path)
        if fault is not None:
            if fault.kind == "eio":
                raise OSError(errno.EIO, "injected read error", self._path)
            if fault.kind == "slow":
                time.sleep(fault.delay_s)
            if fault.kind == "change":
                # Another client rewrites the file while we read it.
                with open(self._path, "r+b") as f:
                    f.seek(0)
                    f.write(b"CHANGED!")
            if fault.kind == "delete":
                os.unlink(self._path)
        data: bytes = self._inner.read(size)
        return data

    def write(self, data: bytes) -> int:
        fault = PLAN.first("write", self._path)
        if fault is not None:
            if fault.kind == "eio":
                raise OSError(errno.EIO, "injected write error", self._path)
            if fault.kind == "enospc":
                raise OSError(errno.ENOSPC, "No space left on device", self._path)
            if fault.kind == "short" and len(data) > 1:
                # A short write that the caller may not notice: half the bytes land.
                return int(self._inner.write(bytes(data[: len(data) // 2])))
            if fault.kind == "flip" and data:
                flipped = bytearray(data)
                flipped[len(flipped) // 2] ^= 0x01
                return int(self._inner.write(bytes(flipped)))
            if fault.kind == "slow":
                time.sleep(fault.delay_s)
        return int(self._inner.write(data))

    def close(self) -> None:
        self._inner.close()


class FaultyFileSystem(LocalFileSystem):
    protocol = (PROTOCOL,)
    root_marker = "/"

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        text = str(path)
        if text.startswith(f"{PROTOCOL}://"):
            text = "/" + text[len(PROTOCOL) + 3 :].lstrip("/")
        return str(super()._strip_protocol(text))

    def unstrip_protocol(self, name: str) -> str:
        return f"{PROTOCOL}://{self._strip_protocol(name)}"

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        inner = super()._open(path, mode=mode, **kwargs)
        return FaultyFile(inner, self._strip_protocol(path), mode)


def register() -> None:
    fsspec.register_implementation(PROTOCOL, FaultyFileSystem, clobber=True)

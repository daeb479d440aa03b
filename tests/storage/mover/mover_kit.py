"""Test helpers for the mover: a real S3-compatible server (moto), trees on any filesystem."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import pytest

_DEFAULT_KIT = Path(__file__).resolve().parents[4] / "shared" / "bench"
KIT = Path(os.environ.get("SHAREMIG_BENCH_KIT", _DEFAULT_KIT))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto in server mode on a free port: a real HTTP S3 endpoint that s3fs talks to."""
    from moto.server import ThreadedMotoServer

    # Port 0: the kernel picks a free one (no race with other test sessions).
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_config(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point every new s3fs instance at the test server (what `FSSPEC_S3_*` would do)."""
    conf = {
        "endpoint_url": s3_server,
        "key": "testing",
        "secret": "testing",
    }
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setitem(fsspec.config.conf, "s3", conf)
    bucket = f"b{uuid.uuid4().hex[:12]}"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(bucket)
    yield bucket


@dataclass
class Place:
    """Where a test tree lives: its URL, and the filesystem + root to write/read it directly."""

    url: str
    fs: Any
    root: str

    def write(self, rel: str, data: bytes) -> None:
        path = f"{self.root}/{rel}"
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as f:
            f.write(data)

    def read_all(self) -> dict[str, bytes]:
        """Every file under the root, by path relative to it."""
        out: dict[str, bytes] = {}
        base = self.fs._strip_protocol(self.root).rstrip("/")
        for path in self.fs.find(base):
            with self.fs.open(path, "rb") as f:
                out[path[len(base) + 1 :]] = f.read()
        return out

    def rm(self, rel: str) -> None:
        self.fs.rm(f"{self.root}/{rel}")


def make_place(kind: str, tmp_path: Path, name: str, bucket: str | None = None) -> Place:
    if kind == "file":
        root = tmp_path / name
        root.mkdir()
        return Place(str(root), fsspec.filesystem("file"), str(root))
    if kind == "memory":
        root = f"/{name}-{uuid.uuid4().hex[:8]}"
        fs = fsspec.filesystem("memory")
        fs.mkdir(root)
        return Place(f"memory://{root}", fs, root)
    if kind == "s3":
        assert bucket is not None
        root = f"{bucket}/{name}"
        return Place(f"s3://{root}", fsspec.filesystem("s3", skip_instance_cache=True), root)
    raise ValueError(kind)

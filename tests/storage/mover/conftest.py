"""Mover fixtures: a real S3-compatible server (moto) and s3fs pointed at it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import fsspec
import pytest


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

"""Fixtures for the Keystone suite: a real Keystone, and a shim validating its tokens.

The shim runs on the Prefect worker's data dir (the root conftest's `worker` and
`service_home`), so migrations started here really run. Its token cache is off
(`SHAREMIG_KEYSTONE_CACHE_S=-1`) so a revoked token is refused at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.kit.keystone import (
    BIN,
    SERVICE_PASSWORD,
    USERS,
    Keystone,
    KeystoneShim,
    KeystoneUnavailable,
    add_user,
    start_keystone,
)
from tests.kit.waiting import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def keystone(session_dir: Path) -> Iterator[Keystone]:
    try:
        ks = start_keystone(session_dir / "keystone")
    except KeystoneUnavailable as exc:
        pytest.skip(f"no real Keystone here: {exc}")
    try:
        for name, (project, roles) in USERS.items():
            add_user(ks, name, project, roles)
        yield ks
    finally:
        ks.stop()


@pytest.fixture(scope="session")
def ks_shim(keystone: Keystone, service_home: Path) -> Iterator[KeystoneShim]:
    """`sharemig api` in Keystone mode, registered in the catalog by `sharemig keystone
    register` (so the clients find it as they find Manila). Tests that run migrations also
    ask for the `worker`; the rest need no Prefect server."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    done = subprocess.run(
        [
            str(BIN / "sharemig"),
            "keystone",
            "register",
            "--endpoint",
            url,
            "--auth-url",
            keystone.url,
            "--admin-password",
            "adminpass",
            "--service-password",
            SERVICE_PASSWORD,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    env = dict(os.environ)
    env.update(
        SHAREMIG_HOME=str(service_home),
        SHAREMIG_AUTH="keystone",
        SHAREMIG_KEYSTONE_URL=keystone.url,
        SHAREMIG_KEYSTONE_PASSWORD=SERVICE_PASSWORD,
        SHAREMIG_KEYSTONE_CACHE_S="-1",
    )
    log_path = service_home / f"ks-shim-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "sharemig"), "api", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    shim = KeystoneShim(url, keystone, proc, log_path)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the shim exited:\n{shim.log_tail()}")
        return httpx.get(url + "/", timeout=2).status_code == 300

    try:
        wait_for(up, timeout=60, interval=0.2, what="the Keystone-mode shim to answer GET /")
        yield shim
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)


@pytest.fixture
def ks_db(service_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test process reads and writes the shim's database (to place shares)."""
    from storage.settings import reset_settings

    monkeypatch.setenv("SHAREMIG_HOME", str(service_home))
    monkeypatch.delenv("SHAREMIG_DATABASE_URL", raising=False)
    if os.environ.get("SHAREMIG_TEST_SERVICE_DB_URL"):
        monkeypatch.setenv("SHAREMIG_DATABASE_URL", os.environ["SHAREMIG_TEST_SERVICE_DB_URL"])
    reset_settings()
    yield service_home
    reset_settings()

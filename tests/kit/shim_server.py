"""A real API shim for tests: `uvicorn api_shim.app:create_app` in its own process.

The test process reaches the same SQLite file through `db_url`, to put shares into states that
only a long migration would reach otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from tests.kit.processes import free_port, stop_group
from tests.kit.waiting import wait_for

PROJECT = "demo"
SHAREMIG = str(Path(sys.executable).with_name("sharemig"))
OTHER_PROJECT = "other"


def write_inventory(home: Path) -> None:
    """Two localfs pools on one backend, an object pool, a tiny pool and a disabled service."""
    pools = home / "pools"
    specs = [
        ("sharemig@localfs#pool-a", "localfs", "pool-a", 100, True),
        ("sharemig@localfs#pool-b", "localfs", "pool-b", 100, True),
        ("sharemig@localfs#tiny", "localfs", "tiny", 1, True),
        ("sharemig@objects#bucket", "fsspec", "objects", 200, True),
        ("retired@old#p", "localfs", "retired", 100, False),
    ]
    entries = []
    for name, driver, directory, capacity, enabled in specs:
        (pools / directory).mkdir(parents=True, exist_ok=True)
        entries.append(
            {
                "name": name,
                "driver": driver,
                "url": (pools / directory).as_uri(),
                "capacity_gb": capacity,
                "enabled": enabled,
            }
        )
    (home / "pools.yaml").write_text(yaml.safe_dump({"pools": entries}, sort_keys=False))


@dataclass
class ShimServer:
    home: Path
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.home / 'sharemig.db'}"

    def metrics(self) -> dict[str, float]:
        """GET /metrics, flattened to {'name{label=value,...}': value}."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        flat: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                flat[f"{sample.name}{{{labels}}}"] = sample.value
        return flat

    def endpoint(self, project: str = PROJECT) -> str:
        return f"{self.url}/v2/{project}"

    def client(
        self, token: str = "admin", version: str | None = "2.99", **headers: str
    ) -> httpx.Client:
        """An HTTP client sending `token` (a key of `tokens`, or a raw value) and a version."""
        hdrs = {"X-Auth-Token": self.tokens.get(token, token), "Accept": "application/json"}
        if version is not None:
            hdrs["X-OpenStack-Manila-API-Version"] = version
        hdrs.update(headers)
        return httpx.Client(base_url=self.url, headers=hdrs, timeout=30)

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def _make_tokens(home: Path) -> dict[str, str]:
    from storage.tokens import create_token

    path = home / "tokens.yaml"
    return {
        "admin": create_token(PROJECT, admin=True, path=path),
        "member": create_token(PROJECT, path=path),
        "other_admin": create_token(OTHER_PROJECT, admin=True, path=path),
        "other_member": create_token(OTHER_PROJECT, path=path),
    }


@contextmanager
def run_shim(home: Path, env: dict[str, str] | None = None) -> Iterator[ShimServer]:
    """Start the shim on a free port with SHAREMIG_HOME=`home`; stop it on exit."""
    home.mkdir(parents=True, exist_ok=True)
    tokens = _make_tokens(home)
    port = free_port()
    proc_env = dict(env or os.environ)
    proc_env["SHAREMIG_HOME"] = str(home)
    proc_env.pop("SHAREMIG_DATABASE_URL", None)
    proc_env.pop("SHAREMIG_POOLS_FILE", None)
    proc_env.pop("SHAREMIG_TOKENS_FILE", None)
    log_path = home / f"shim-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            # `sharemig api` is how operators run it; the test runs the same command.
            [SHAREMIG, "api", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=proc_env,
            start_new_session=True,
        )
    server = ShimServer(home, f"http://127.0.0.1:{port}", proc, log_path, tokens)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the shim exited:\n{server.log_tail()}")
            return httpx.get(server.url + "/", timeout=2).status_code == 300

        wait_for(up, timeout=60, interval=0.2, what="the API shim to answer GET /")
        yield server
    finally:
        stop_group(proc, timeout=20)

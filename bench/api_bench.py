#!/usr/bin/env python3
"""API shim latency: migration_get_progress with 100 migrations in the database, migration_start.

A real shim (`uvicorn api_shim.app:create_app`) on a scratch data dir; the client is httpx over
loopback, one request at a time. Baselines from the same run: `GET /` (the HTTP stack alone)
and `GET /shares/{id}` (one share read). migration_start is timed against a real Prefect
server with the deployments applied (no worker: the runs stay scheduled, as the 202 must not
wait for them); its baseline is the same-host no-op start (200), which runs the same checks
without creating a run.

    python bench/api_bench.py [--requests 1000] [--migrations 100] [--starts 30] [--no-prefect]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "n": len(ordered),
        "p50_ms": round(pick(0.50) * 1000, 3),
        "p99_ms": round(pick(0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


def timed_requests(send: Callable[[int], httpx.Response], n: int, ok: int) -> list[float]:
    for i in range(min(20, n)):  # warm-up: imports, connection, caches
        send(i)
    out = []
    for i in range(n):
        start = time.perf_counter()
        resp = send(i)
        out.append(time.perf_counter() - start)
        if resp.status_code != ok:
            raise SystemExit(f"unexpected {resp.status_code}: {resp.text[:300]}")
    return out


def seed(db_url: str, migrations: int, idle: int) -> tuple[list[str], list[str]]:
    """`migrations` shares mid-copy (with counters) and `idle` shares ready to migrate."""
    from storage.db import session_scope
    from storage.models import Migration
    from storage.shares import active_instance, create_share

    copying, ready = [], []
    with session_scope(db_url) as session:
        for i in range(migrations + idle):
            share = create_share(
                session, project_id="bench", size=1, name=f"b{i}", host="sharemig@localfs#pool-a"
            )
            if i >= migrations:
                ready.append(share.id)
                continue
            session.add(
                Migration(
                    share_id=share.id,
                    source_instance_id=active_instance(session, share).id,
                    dest_host="sharemig@localfs#pool-b",
                    active=True,
                    files_planned=10_000,
                    bytes_planned=50 << 30,
                    files_verified=100 * i,
                    bytes_verified=(i % 100) * (50 << 30) // 100,
                    current_path=f"dir/{i}/file.bin",
                )
            )
            share.status, share.task_state = "migrating", "data_copying_in_progress"
            copying.append(share.id)
    return copying, ready


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--migrations", type=int, default=100)
    ap.add_argument("--starts", type=int, default=30)
    ap.add_argument("--no-prefect", action="store_true", help="skip the migration_start part")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sharemig-api-bench-"))
    home = work / "home"
    prefect_port, shim_port = free_port(), free_port()
    # Prefect reads its settings at import: set them before anything imports it.
    os.environ.update(
        SHAREMIG_HOME=str(home),
        PREFECT_HOME=str(work / "prefect"),
        PREFECT_API_URL=f"http://127.0.0.1:{prefect_port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    os.environ.pop("SHAREMIG_DATABASE_URL", None)
    from storage.bootstrap import demo_inventory, prepare_database
    from storage.tokens import create_token

    inventory = demo_inventory(home)
    for pool in inventory["pools"]:  # type: ignore[attr-defined]
        pool["capacity_gb"] = 100_000  # room for every bench share
        Path(pool["url"].removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    (home / "pools.yaml").write_text(json.dumps(inventory))  # JSON is YAML
    prepare_database()
    db_url = f"sqlite:///{home / 'sharemig.db'}"
    token = create_token("bench", admin=True, path=home / "tokens.yaml")
    copying, ready = seed(db_url, args.migrations, args.starts)
    bin_dir = Path(sys.executable).parent
    procs = []
    results: dict[str, object] = {"migrations_in_db": args.migrations}
    try:
        shim = spawn(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api_shim.app:create_app",
                "--factory",
                "--port",
                str(shim_port),
                "--log-level",
                "warning",
            ],
            work / "shim.log",
        )
        procs.append(shim)
        base = f"http://127.0.0.1:{shim_port}"
        wait_until(lambda: httpx.get(base + "/").status_code == 300, 60, "the shim")
        headers = {"X-Auth-Token": token, "X-OpenStack-Manila-API-Version": "2.98"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            n = args.requests
            pick = lambda i: copying[i % len(copying)]  # noqa: E731
            exp = {
                "X-OpenStack-Manila-API-Version": "2.95",
                "X-OpenStack-Manila-API-Experimental": "true",
            }
            results["baseline_get_root"] = percentiles(timed_requests(lambda i: c.get("/"), n, 300))
            results["baseline_share_show"] = percentiles(
                timed_requests(lambda i: c.get(f"/v2/bench/shares/{pick(i)}"), n, 200)
            )
            results["progress_get_2.98"] = percentiles(
                timed_requests(
                    lambda i: c.get(f"/v2/bench/shares/{pick(i)}/migration-progress"), n, 200
                )
            )
            results["progress_post_2.95_experimental"] = percentiles(
                timed_requests(
                    lambda i: c.post(
                        f"/v2/bench/shares/{pick(i)}/action",
                        json={"migration_get_progress": None},
                        headers=exp,
                    ),
                    n,
                    200,
                )
            )
            if not args.no_prefect:
                server = spawn(
                    [
                        str(bin_dir / "prefect"),
                        "server",
                        "start",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(prefect_port),
                    ],
                    work / "prefect.log",
                )
                procs.append(server)
                api = os.environ["PREFECT_API_URL"]
                wait_until(lambda: httpx.get(api + "/health").status_code == 200, 120, "prefect")
                from flows.deploy import apply_deployments

                apply_deployments(work_pool="sharemig")

                def start(i: int, host: str) -> httpx.Response:
                    body = {
                        "migration_start": {
                            "host": host,
                            "preserve_metadata": False,
                            "preserve_snapshots": False,
                            "writable": False,
                            "nondisruptive": False,
                        }
                    }
                    return c.post(f"/v2/bench/shares/{ready[i]}/action", json=body)

                noop = [start(i, "sharemig@localfs#pool-a") for i in range(2)]  # warm-up
                assert all(r.status_code == 200 for r in noop), noop[0].text
                samples_noop, samples_start = [], []
                for i in range(len(ready)):
                    t = time.perf_counter()
                    r = start(i, "sharemig@localfs#pool-a")
                    samples_noop.append(time.perf_counter() - t)
                    assert r.status_code == 200, r.text
                    t = time.perf_counter()
                    r = start(i, "sharemig@localfs#pool-b")
                    samples_start.append(time.perf_counter() - t)
                    assert r.status_code == 202, r.text
                results["baseline_start_noop_200"] = percentiles(samples_noop)
                results["migration_start_202"] = percentiles(samples_start)
    finally:
        for proc in reversed(procs):
            stop(proc)
    base_p50 = results["baseline_share_show"]["p50_ms"]  # type: ignore[index]
    for value in results.values():
        if isinstance(value, dict):
            value["x_share_show_p50"] = round(value["p50_ms"] / base_p50, 2)
    print(json.dumps(results, indent=2))
    print(f"\nraw data dir: {work}")


if __name__ == "__main__":
    main()

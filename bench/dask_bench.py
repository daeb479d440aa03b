#!/usr/bin/env python3
"""The Dask executor beside the local pool: `run_copy` of one tree, both ways, same run.

Generates a tree with the shared kit's gen_dataset.py, starts a `dask scheduler` and
`--dask-workers` `dask worker` processes (one thread each, their own SHAREMIG_HOME, the
bench's database URL), then alternates per repetition
  local: run_copy(tree -> fresh dir) on this host's pool (the default executor)
  dask:  the same with SHAREMIG_DASK_ADDRESS set (batches are tasks on the workers)
and prints the medians and dask/local. On a 2-core machine the workers share the cores with
the submitter, so the ratio shows the executor's overhead (task round trips, the stop event,
each worker's own database connections), not a speed-up. Put --workdir on a scratch fs.

    python bench/dask_bench.py [--preset small] [--reps 3] [--dask-workers 2] --workdir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KIT = Path(os.environ.get("SHAREMIG_BENCH_KIT", REPO.parent / "shared" / "bench"))
DASK = str(Path(sys.executable).with_name("dask"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Procs = list[subprocess.Popen[bytes]]


def start_cluster(work: Path, db_url: str, workers: int) -> tuple[str, Procs]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    procs = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=(logs / "scheduler.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    ]
    for i in range(workers):
        home = work / f"worker-{i}"
        home.mkdir(exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "SHAREMIG_HOME": str(home),
            "SHAREMIG_DATABASE_URL": db_url,
        }
        argv = [DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
        argv += ["--name", f"w{i}", "--local-directory", str(home / "dask")]
        procs.append(
            subprocess.Popen(
                argv, stdout=(logs / f"w{i}.log").open("wb"), stderr=subprocess.STDOUT, env=env
            )
        )
    from distributed import Client

    with Client(address, timeout=120, set_as_default=False) as client:
        client.wait_for_workers(workers, timeout=300)
    return address, procs


def one_copy(tree: Path, dest: Path, dask_address: str | None) -> float:
    from storage.mover import run_copy
    from storage.settings import reset_settings

    if dask_address:
        os.environ["SHAREMIG_DASK_ADDRESS"] = dask_address
    else:
        os.environ.pop("SHAREMIG_DASK_ADDRESS", None)
    reset_settings()
    shutil.rmtree(dest, ignore_errors=True)
    started = time.perf_counter()
    summary = run_copy(str(tree), str(dest))
    took = time.perf_counter() - started
    assert summary.complete and not summary.failed, summary
    shutil.rmtree(dest)
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dask-workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--tree", type=Path, default=None, help="an existing tree (else generated)")
    args = ap.parse_args()
    work: Path = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{work / 'bench.db'}"
    os.environ.update(SHAREMIG_HOME=str(work / "home"), SHAREMIG_DATABASE_URL=db_url)
    from storage.db import upgrade

    upgrade(db_url)
    tree = args.tree or work / args.preset
    if args.tree is None and not tree.exists():
        subprocess.run(
            [sys.executable, str(KIT / "gen_dataset.py"), str(tree), "--preset", args.preset],
            check=True,
        )
    address, procs = start_cluster(work, db_url, args.dask_workers)
    times: dict[str, list[float]] = {"local": [], "dask": []}
    try:
        for rep in range(args.reps):
            for name, addr in (("local", None), ("dask", address)):
                took = one_copy(tree, work / f"out-{name}", addr)
                times[name].append(took)
                print(json.dumps({"rep": rep, "executor": name, "seconds": round(took, 2)}))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    local, dask = statistics.median(times["local"]), statistics.median(times["dask"])
    print(
        f"\n{tree.name}: local pool median {local:.2f} s, Dask ({args.dask_workers} workers x 1 "
        f"thread) median {dask:.2f} s, dask/local = {dask / local:.2f} ({args.reps} reps, "
        f"{os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Orchestration overhead: a whole host-assisted `migrate_share` vs the bare mover, same tree.

Starts its own Prefect server + process worker (temp PREFECT_HOME, free port), generates a
tree with the shared kit's gen_dataset.py, then per repetition times
  bare:  `run_copy(tree -> fresh dir)` in a fresh interpreter, like `sharemig copy`
         (bare_s: the whole process; bare_copy_s: run_copy alone, without interpreter start)
  flow:  control.start_migration -> data_copying_completed       (phase 1, incl. run start)
         + resume(approve) -> migration_success                  (re-entry, final sync, switch)
The approval wait itself is excluded (it is a person's time). Reported, with the bare mover of
the same run as the baseline:
  (a) whole migration / bare mover process                        (ratio)
  (b) the fixed cost: Prefect starting flow-run processes (Scheduled -> Running, at the start
      and after the resume) and everything outside phase 1's copy (fixed_s), and the ratio
      without the process starts
  (c) the data path: phase 1's copy inside the flow (copy-round start -> finish-copy end, from
      the task runs) / run_copy's own time                        (data_ratio)

  the fixed cost's target row: process starts (start -> running, plus resume -> running)
  against the 4 s target, and as a share of the whole migration.
For the (a) row on a tree whose bare copy takes >= 60 s, `--trees N` puts N generated trees
of the preset side by side in one share (e.g. `--preset large-files --trees 4` on a scratch
ext4); the table says when the bare copy was shorter than that.

    python bench/orchestration_bench.py [--preset small] [--trees 1] [--reps 3]
        [--workdir DIR] [--keep]
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
import tempfile
import time
from datetime import UTC
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
KIT = Path(os.environ.get("SHAREMIG_BENCH_KIT", REPO.parent / "shared" / "bench"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def set_environment(work: Path) -> None:
    """Prefect reads its settings at import: everything is set before the first import."""
    port = free_port()
    os.environ.update(
        PREFECT_HOME=str(work / "prefect-home"),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PREFECT_WORKER_QUERY_SECONDS="1",
        SHAREMIG_HOME=str(work / "home"),
    )
    os.environ.pop("SHAREMIG_DATABASE_URL", None)


def fs_type(path: Path) -> str:
    """Filesystem type holding `path` (longest matching mount point)."""
    real, best, kind = str(path.resolve()), "", "?"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mnt, fstype = line.split()[1], line.split()[2]
        if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, kind = mnt, fstype
    return kind


def wait(cond: Any, timeout: float, what: str, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def task_state(share_id: str) -> str | None:
    from storage.db import session_scope
    from storage.shares import get_share

    with session_scope() as s:
        state = get_share(s, share_id).task_state
    if state == "migration_error":
        raise SystemExit(f"migration of {share_id} failed; see the worker log")
    return state


def start_latency(run_id: str) -> float:
    """Seconds the run spent between Scheduled/Resuming and Running (process start-up)."""
    from uuid import UUID

    from prefect import get_client

    with get_client(sync_client=True) as client:
        states = sorted(client.read_flow_run_states(UUID(run_id)), key=lambda s: s.timestamp)
    total, since = 0.0, None
    for st in states:
        if st.type.value == "SCHEDULED":
            since = st.timestamp
        elif st.type.value == "RUNNING" and since is not None:
            total += (st.timestamp - since).total_seconds()
            since = None
    return total


def copy_span(run_id: str) -> float:
    """Seconds from phase 1's copy-round start to its finish-copy end (the flow's data path)."""
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)])), limit=200
        )
    starts = [r.start_time for r in runs if r.name.startswith("copy-round") and r.start_time]
    ends = [r.end_time for r in runs if r.name.startswith("finish-copy") and r.end_time]
    if not starts or not ends:
        raise SystemExit(f"no copy-round/finish-copy task runs in flow run {run_id}")
    return float((min(ends) - min(starts)).total_seconds())


SWITCHOVER_STEPS = {
    "re-entry": ("begin",),
    "audit_and_late_writes": ("frozen-and-unchanged",),
    "final_sync": ("copy-round", "finish-copy"),
    "require_complete": ("require-complete",),
    "switch": ("switch-to-destination",),
    "delete_source": ("delete-source",),
    "finish": ("finish-success",),
}


def switchover_split(run_id: str, resumed: float) -> dict[str, float]:
    """How approval -> migration_success splits: the resumed run's process start, then the
    time in each step's task runs after the resume (parent run and the switchover subflow)."""
    from datetime import datetime
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
    )

    since = datetime.fromtimestamp(resumed, tz=UTC)
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(UUID(run_id))
        running = sorted(
            s.timestamp for s in states if s.type.value == "RUNNING" and s.timestamp > since
        )
        subflows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(run_id)])
            )
        )
        ids = [UUID(run_id), *(r.id for r in subflows)]
        runs: list[Any] = []
        while True:  # the server serves at most 200 task runs per page
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
                limit=200,
                offset=len(runs),
            )
            runs += page
            if len(page) < 200:
                break
    split = {"resume_start": (running[0] - since).total_seconds() if running else float("nan")}
    after = [r for r in runs if r.start_time and r.end_time and r.start_time > since]
    for label, names in SWITCHOVER_STEPS.items():
        # Task run names are "<task name>-<suffix>".
        split[label] = sum(
            (r.end_time - r.start_time).total_seconds()  # type: ignore[operator]
            for r in after
            if r.name.rsplit("-", 1)[0] in names
        )
    return {f"switch_{k}_s": v for k, v in split.items()}


def one_migration(tree: Path) -> dict[str, float]:
    from prefect.flow_runs import resume_flow_run

    from flows.control import StartRequest, start_migration
    from storage.db import session_scope
    from storage.pools import driver_for
    from storage.shares import active_instance, create_share, get_share

    with session_scope() as s:
        share = create_share(s, project_id="bench", size=1, host="sharemig@localfs#pool-a")
        path = Path(
            driver_for(s, share.host or "").instance_url(active_instance(s, share).location)
        )
        share_id = share.id
    path.rmdir()
    subprocess.run(["cp", "-a", str(tree), str(path)], check=True)
    req = StartRequest(
        host="sharemig@localfs#pool-b",
        preserve_metadata=False,
        preserve_snapshots=False,
        writable=False,
        nondisruptive=False,
        force_host_assisted_migration=True,
    )
    t0 = time.perf_counter()
    run_id = str(start_migration(share_id, req).flow_run_id)
    wait(lambda: task_state(share_id) == "data_copying_completed", 900, "phase 1")
    t1 = time.perf_counter()
    from uuid import UUID

    from prefect import get_client

    def suspended() -> bool:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(run_id)).state
        return bool(state and state.is_paused())

    wait(suspended, 60, "the run to suspend", interval=0.05)
    t2 = time.perf_counter()
    resumed_at = time.time()
    resume_flow_run(UUID(run_id), run_input={"approve": True, "reason": "bench"})
    wait(lambda: task_state(share_id) == "migration_success", 900, "switchover")
    t3 = time.perf_counter()
    with session_scope() as s:
        share = get_share(s, share_id)
        moved = driver_for(s, share.host or "").instance_url(active_instance(s, share).location)
    # The migrated copy is not needed any more; a large tree on tmpfs must not pile up.
    shutil.rmtree(moved, ignore_errors=True)
    return {
        "flow_s": (t1 - t0) + (t3 - t2),
        "phase1_s": t1 - t0,
        "phase2_s": t3 - t2,
        "process_start_s": start_latency(run_id),
        "flow_copy_s": copy_span(run_id),
        **switchover_split(run_id, resumed_at),
    }


BARE = """
import json, sys, time
from storage.mover import run_copy
t = time.perf_counter()
s = run_copy(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t, "complete": s.complete,
                  "failed": s.failed[:5]}))
"""


def bare_copy(tree: Path, dest: Path) -> tuple[float, float]:
    """The bare mover in its own interpreter (as `sharemig copy` runs it), on the same
    database and settings as the flow; returns (whole process, run_copy alone)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", BARE, str(tree), str(dest)], capture_output=True, check=False
    )
    elapsed = time.perf_counter() - t0
    lines = out.stdout.decode().strip().splitlines()
    inner = json.loads(lines[-1]) if lines else {}
    if out.returncode or not inner.get("complete"):
        raise SystemExit(f"bare copy did not complete: {inner} {out.stderr.decode()[-500:]}")
    return elapsed, float(inner["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--trees", type=int, default=1, help="trees of the preset in one share")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument(
        "--cold", action="store_true", help="no zygote: every flow run starts Prefect afresh"
    )
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sharemig-orch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # A reused --workdir keeps its generated tree but starts from a fresh database: an old
    # manifest would make the bare mover resume a copy whose destination was removed.
    for old in ("home", "prefect-home", *(p.name for p in work.glob("bare-*"))):
        shutil.rmtree(work / old, ignore_errors=True)
    set_environment(work)

    sys.path.insert(0, str(REPO))
    from cli.supervisor import Child, http_ok
    from flows.deploy import apply_deployments
    from flows.warm_launch import SOCKET_ENV
    from flows.zygote import ping, socket_path
    from storage.bootstrap import prepare_database

    prepare_database()
    prefect = str(Path(sys.executable).with_name("prefect"))
    server = Child(
        "prefect server",
        [
            prefect,
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            os.environ["PREFECT_SERVER_API_PORT"],
        ],
        work / "server.log",
        os.environ,
    )
    zygote_path = socket_path(Path(os.environ["SHAREMIG_HOME"]), 1)
    zygote = Child(
        "zygote",
        [sys.executable, "-m", "flows.zygote", "serve", str(zygote_path)],
        work / "zygote.log",
        os.environ,
    )
    worker_env = dict(os.environ) if args.cold else {**os.environ, SOCKET_ENV: str(zygote_path)}
    worker = Child(
        "prefect worker",
        [prefect, "worker", "start", "--pool", "sharemig", "--type", "process"],
        work / "worker.log",
        worker_env,
    )
    try:
        server.start()
        server.wait_healthy(http_ok(os.environ["PREFECT_API_URL"] + "/health"), 300)
        apply_deployments()
        if not args.cold:
            zygote.start()
            zygote.wait_healthy(lambda: ping(zygote_path), 120)
        worker.start()
        from prefect import get_client

        def registered() -> bool:
            with get_client(sync_client=True) as client:
                return bool(client.read_workers_for_work_pool("sharemig"))

        wait(registered, 60, "worker", interval=0.5)
        tree = work / "tree"
        if not tree.exists():
            parts = [tree] if args.trees <= 1 else [tree / f"t{i}" for i in range(args.trees)]
            for part in parts:
                gen = [sys.executable, str(KIT / "gen_dataset.py"), str(part)]
                subprocess.run([*gen, "--preset", args.preset], check=True, capture_output=True)
        rows = []
        for rep in range(args.reps):
            first_bare = rep % 2 == 0  # alternate the order: neither always gets the warm cache
            if first_bare:
                bare, bare_copy_s = bare_copy(tree, work / f"bare-{rep}")
                shutil.rmtree(work / f"bare-{rep}", ignore_errors=True)
            flow = one_migration(tree)
            if not first_bare:
                bare, bare_copy_s = bare_copy(tree, work / f"bare-{rep}")
                shutil.rmtree(work / f"bare-{rep}", ignore_errors=True)
            row = {"rep": rep, "bare_s": bare, "bare_copy_s": bare_copy_s, **flow}
            rows.append(row)
            print(
                json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
            )
    finally:
        worker.stop()
        zygote.stop()
        server.stop()
    for row in rows:
        row["fixed_s"] = row["flow_s"] - row["flow_copy_s"]
        row["data_ratio"] = row["flow_copy_s"] / row["bare_copy_s"]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "rep"}
    ratio = med["flow_s"] / med["bare_s"]
    ratio_ex = (med["flow_s"] - med["process_start_s"]) / med["bare_s"]
    result = {
        "preset": args.preset,
        "trees": args.trees,
        "workdir_fs": fs_type(work),
        "reps": args.reps,
        "starts": "cold" if args.cold else "warm",
        "load_avg": os.getloadavg()[0],
        **{k: round(v, 3) for k, v in med.items()},
        "ratio": round(ratio, 2),
        "ratio_without_process_start": round(ratio_ex, 2),
        "target": 1.10,
    }
    print(
        f"\npreset={args.preset} x{args.trees} on {result['workdir_fs']} reps={args.reps} "
        f"{result['starts']} starts "
        f"(medians, warm cache, same run; load average now {result['load_avg']:.1f})"
    )
    print("| measure | seconds |\n|---|---:|")
    for k in (
        "bare_s",
        "bare_copy_s",
        "flow_s",
        "phase1_s",
        "flow_copy_s",
        "phase2_s",
        "process_start_s",
        "fixed_s",
        *(k for k in med if k.startswith("switch_")),
    ):
        print(f"| {k} | {med[k]:.2f} |")
    short = " (bare copy under 60 s: not the (a) row's tree)" if med["bare_copy_s"] < 60 else ""
    print(f"| **(a) ratio flow/bare** | **{ratio:.2f}** (target <= 1.10){short} |")
    print(
        f"| **fixed cost: flow-run process starts** | **{med['process_start_s']:.2f} s** "
        f"(target <= 4 s; {med['process_start_s'] / med['flow_s']:.0%} of the migration) |"
    )
    print(f"| (b) ratio without flow-run process starts | {ratio_ex:.2f} |")
    print(f"| **(c) data path: flow copy / run_copy** | **{med['data_ratio']:.2f}** |")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "orchestration.jsonl").open("a") as fh:
        fh.write(json.dumps(result) + "\n")
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

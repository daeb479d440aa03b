#!/usr/bin/env python3
"""Time sharemig's verified mover against cp -a, rsync -aHAX and Manila's copy pattern.

Every tool copies the same tree on the same scratch filesystem in the same run, interleaved
rep by rep, and the table reports each median as a ratio to `cp -a`'s median from this run.
Each timing includes process start-up and a final `sync`; with `--cold`, caches are dropped
before every timing. `--million` adds the memory figure: peak RSS of the mover's processes
while it copies a tree of 1,000,000 entries.

    bench/mover_bench.py --scratch /var/tmp/mover-bench/tmpfs --reps 3
    bench/mover_bench.py --scratch /var/tmp/mover-bench/ext4 --cold --reps 3
    bench/mover_bench.py --scratch /var/tmp/mover-bench/tmpfs --million --only mover
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

KIT = Path(
    os.environ.get("SHAREMIG_BENCH_KIT", Path(__file__).resolve().parents[2] / "shared/bench")
)
PY = sys.executable
MOVER = """
import json, sys, time
from storage.db import upgrade
from storage.mover import run_copy
src, dst, db, workers = sys.argv[1:5]
upgrade(db)
t = time.perf_counter()
s = run_copy(src, dst, db_url=db, workers=int(workers) or None)
print(json.dumps({"seconds": time.perf_counter() - t, "files": s.files_copied,
                  "complete": s.complete, "failed": s.failed[:5]}))
sys.exit(0 if s.complete else 1)
"""


def drop_caches() -> str:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "cold"
    except OSError:
        return "warm"


def command(tool: str, src: Path, dst: Path, db_dir: Path, workers: int) -> list[str]:
    if tool == "cp":
        return ["cp", "-a", f"{src}/.", f"{dst}/"]
    if tool == "rsync":
        return ["rsync", "-aHAX", f"{src}/", f"{dst}/"]
    if tool == "manila":
        return [
            PY,
            str(KIT / "manila_pattern.py"),
            str(src),
            str(dst),
            "--keep-going",
            "--cmd-timeout",
            "5",
        ]
    if tool == "mover":
        # The schema exists before the timing, as it does for `sharemig copy` after the first
        # run; the timed command still checks it (the CLI's `upgrade()` on every start).
        db = f"sqlite:///{db_dir}/mover-{time.monotonic_ns()}.db"
        subprocess.run([PY, "-c", f"from storage.db import upgrade; upgrade({db!r})"], check=True)
        return [PY, "-c", MOVER, str(src), str(dst), db, str(workers)]
    raise SystemExit(f"unknown tool {tool}")


class RssSampler(threading.Thread):
    """Peak RSS of a process tree (largest single process and the whole tree), from /proc."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_one = self.peak_tree = 0
        self.done = threading.Event()

    def _tree(self) -> list[int]:
        pids, frontier = [self.pid], [self.pid]
        while frontier:
            p = frontier.pop()
            try:
                kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            except OSError:
                continue
            pids += map(int, kids)
            frontier += map(int, kids)
        return pids

    def run(self) -> None:
        while not self.done.is_set():
            sizes = []
            for p in self._tree():
                try:
                    for line in Path(f"/proc/{p}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            sizes.append(int(line.split()[1]) * 1024)
                except OSError:
                    pass
            if sizes:
                self.peak_one = max(self.peak_one, max(sizes))
                self.peak_tree = max(self.peak_tree, sum(sizes))
            self.done.wait(0.1)


def timed(cmd: list[str], cold: bool, sample_rss: bool = False) -> dict[str, object]:
    cache = drop_caches() if cold else "warm"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = RssSampler(proc.pid) if sample_rss else None
    if sampler:
        sampler.start()
    out, err = proc.communicate()
    os.sync()
    secs = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row: dict[str, object] = {
        "seconds": round(secs, 3),
        # CPU seconds of the tool and every process it waited for: less sensitive than the
        # wall time to other work on the machine, and the wall time's floor on 2 idle cores.
        "cpu_s": round(cpu, 3),
        "rc": proc.returncode,
        "cache": cache,
        # Other work on the 2 cores shifts results; the load says how quiet the run was.
        "load_avg": round(os.getloadavg()[0], 2),
    }
    if sampler:
        sampler.done.set()
        sampler.join()
        row["peak_rss_one_mb"] = round(sampler.peak_one / 2**20, 1)
        row["peak_rss_tree_mb"] = round(sampler.peak_tree / 2**20, 1)
    if proc.returncode:
        row["stderr"] = err.decode(errors="replace")[-400:]
    if out.strip().startswith(b"{"):
        row["inner"] = json.loads(out.strip().splitlines()[-1])
    return row


def treecmp(src: Path, dst: Path) -> bool:
    r = subprocess.run(
        [PY, str(KIT / "treecmp.py"), str(src), str(dst), "--owner", "-q"], capture_output=True
    )
    return r.returncode == 0


def ensure_tree(scratch: Path, preset: str) -> Path:
    tree = scratch / preset
    if not tree.exists():
        subprocess.run([PY, str(KIT / "gen_dataset.py"), str(tree), "--preset", preset], check=True)
    return tree


def ensure_million(scratch: Path, entries: int) -> Path:
    """`entries` entries, 1,000 files per directory; every tenth file holds 1 KiB, the rest
    are empty (on tmpfs each non-empty file takes a 4 KiB page, twice with the copy)."""
    tree = scratch / f"million-{entries}"
    if tree.exists():
        return tree
    part = tree.with_suffix(".partial")
    shutil.rmtree(part, ignore_errors=True)
    data = b"x" * 1024
    per_dir = 1000
    dirs = entries // (per_dir + 1)
    for d in range(dirs):
        dpath = part / f"d{d:05d}"
        os.makedirs(dpath)
        for f in range(per_dir):
            fd = os.open(dpath / f"f{f:04d}", os.O_WRONLY | os.O_CREAT, 0o644)
            if f % 10 == 0:
                os.write(fd, data)
            os.close(fd)
    part.rename(tree)
    return tree


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scratch", type=Path, required=True, help="scratch filesystem directory")
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="drop caches before every timing")
    ap.add_argument("--only", default="cp,rsync,mover,manila", help="tools, comma-separated")
    ap.add_argument("--manila-reps", type=int, default=1, help="the Manila pattern is slow")
    ap.add_argument("--workers", type=int, default=0, help="mover workers (0: its default)")
    ap.add_argument("--million", action="store_true", help="add the 1,000,000-entry RSS run")
    ap.add_argument("--million-entries", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path, help="append result rows (JSON lines) here")
    args = ap.parse_args(argv)

    tools = [t for t in args.only.split(",") if t and (t != "rsync" or shutil.which("rsync"))]
    db_dir = Path(tempfile.mkdtemp(prefix="mover-bench-db-"))
    rows: list[dict[str, object]] = []
    if set(tools) - {"mover"} or not args.million:
        src = ensure_tree(args.scratch, args.preset)
        for rep in range(1, args.reps + 1):
            for tool in tools:
                if tool == "manila" and rep > args.manila_reps:
                    continue
                dst = args.scratch / f"out-{tool}"
                shutil.rmtree(dst, ignore_errors=True)
                dst.mkdir()
                row = timed(command(tool, src, dst, db_dir, args.workers), args.cold)
                row.update(tool=tool, rep=rep, preset=args.preset, fs=str(args.scratch))
                if tool in ("mover", "cp") and rep == 1:
                    row["identical"] = treecmp(src, dst)
                shutil.rmtree(dst, ignore_errors=True)
                rows.append(row)
                print(json.dumps(row), flush=True)
        report(rows)
    if args.million:
        src = ensure_million(args.scratch, args.million_entries)
        dst = args.scratch / "out-million"
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir()
        row = timed(command("mover", src, dst, db_dir, args.workers), False, sample_rss=True)
        row.update(tool="mover-million", rep=1, entries=args.million_entries)
        shutil.rmtree(dst, ignore_errors=True)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        with args.json.open("a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    shutil.rmtree(db_dir, ignore_errors=True)
    return 0


def report(rows: list[dict[str, object]]) -> None:
    by_tool: dict[str, list[float]] = {}
    cpu_by_tool: dict[str, list[float]] = {}
    for row in rows:
        by_tool.setdefault(str(row["tool"]), []).append(float(row["seconds"]))  # type: ignore[arg-type]
        cpu_by_tool.setdefault(str(row["tool"]), []).append(float(row["cpu_s"]))  # type: ignore[arg-type]
    med = {t: statistics.median(v) for t, v in by_tool.items()}
    cpu = {t: statistics.median(v) for t, v in cpu_by_tool.items()}
    base = med.get("cp")
    loads = [float(r["load_avg"]) for r in rows if "load_avg" in r]  # type: ignore[arg-type]
    if loads:
        print(f"\nload average during the run: {min(loads):.1f}-{max(loads):.1f}")
    print(
        "\n| tool | reps | median s | x cp (same run) | mover is N x faster "
        "| median CPU s | CPU x cp |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for tool, secs in med.items():
        ratio = f"{secs / base:.2f}" if base else "-"
        faster = f"{secs / med['mover']:.1f}" if "mover" in med and tool != "mover" else "-"
        cpu_ratio = f"{cpu[tool] / cpu['cp']:.2f}" if cpu.get("cp") else "-"
        print(
            f"| {tool} | {len(by_tool[tool])} | {secs:.2f} | {ratio} | {faster} "
            f"| {cpu[tool]:.2f} | {cpu_ratio} |"
        )


if __name__ == "__main__":
    sys.exit(main())

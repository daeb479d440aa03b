#!/usr/bin/env python3
"""localfs driver-assisted migration: switchover time against copying the same share.

Same filesystem: a multi-GiB share moves by rename, so the switchover should take well under a
second whatever the size; the baseline is `cp -a` of the same share on the same filesystem, in
the same run. With `--cross`: phase 1 (the mover's verified copy onto a tmpfs) against `cp -a`
onto that tmpfs, and the switchover's incremental final sync after 1% of files changed.
With `--btrfs` (root): two loop-mounted btrfs images; phase 1 of a share with 3 snapshots
(send/receive of the chain) against `cp -a` of the live data alone onto the other filesystem,
the switchover after 1% of files changed against phase 1 (target <= 0.05x), and the
same-filesystem switchover (target <= 0.1 s).

    python bench/driver_bench.py [--dir DIR] [--size-gib 3] [--files 2000] [--reps 3] [--cross]
                                 [--btrfs [--btrfs-size-gib 4]]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

from storage.db import upgrade
from storage.drivers.base import MigrationRef, PoolRef
from storage.drivers.registry import get_driver

MiB = 1 << 20


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def make_share(root: Path, size_gib: float, files: int) -> tuple[int, int]:
    """Big files of real (written, not fallocated) bytes plus a tree of small files."""
    root.mkdir(parents=True, exist_ok=True)
    block = os.urandom(MiB)
    total = int(size_gib * 1024) * MiB
    big = max(1, total // (1024 * MiB))
    written = 0
    for i in range(big):
        with open(root / f"volume-{i:02d}.bin", "wb") as fh:
            for _ in range(min(1024, (total - written) // MiB)):
                fh.write(block)
                written += MiB
    for i in range(files):
        d = root / "tree" / f"d{i % 37:02d}" / f"e{i % 5}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.dat").write_bytes(block[: 4096 + (i * 7919) % (60 * 1024)])
    subprocess.run(["sync"], check=True)
    return big + files, written


def cp_a(src: Path, dst: Path) -> float:
    """Seconds for `cp -a` plus the `sync` that charges write-back to it."""

    def run() -> None:
        subprocess.run(["cp", "-a", "--", str(src), str(dst)], check=True)
        subprocess.run(["sync"], check=True)

    return timed(run)


def migrate(
    source: PoolRef, dest: PoolRef, src_loc: str, dst_loc: str, db: str
) -> dict[str, float]:
    """One driver-assisted migration; seconds for phase 1 and for the switchover."""
    src_drv, dst_drv = get_driver(source), get_driver(dest)
    dst_drv.create_instance(dst_loc)
    ref = MigrationRef(str(uuid.uuid4()), src_loc, dest, dst_loc, db_url=db)
    phase1 = timed(lambda: (src_drv.migration_start(ref), src_drv.migration_continue(ref)))
    switch = timed(lambda: src_drv.migration_complete(ref))
    src_drv.delete_instance(src_loc)
    return {"phase1_s": phase1, "switchover_s": switch}


def pool(name: str, root: Path) -> PoolRef:
    root.mkdir(parents=True, exist_ok=True)
    return PoolRef(f"bench@lfs#{name}", "localfs", root.as_uri())


def same_fs(base: Path, args: argparse.Namespace, db: str) -> dict[str, object]:
    a, b = pool("a", base / "pool-a"), pool("b", base / "pool-b")
    entries, size = make_share(base / "pool-a" / "share-0", args.size_gib, args.files)
    cp_s = cp_a(base / "pool-a" / "share-0", base / "cp-baseline")
    shutil.rmtree(base / "cp-baseline")
    runs = []
    here, there = a, b
    for i in range(args.reps):
        runs.append(migrate(here, there, f"share-{i}", f"share-{i + 1}", db))
        here, there = there, here
    switch = statistics.median(r["switchover_s"] for r in runs)
    phase1 = statistics.median(r["phase1_s"] for r in runs)
    return {
        "case": "same_fs",
        "entries": entries,
        "bytes": size,
        "reps": args.reps,
        "cp_a_s": round(cp_s, 3),
        "phase1_median_s": round(phase1, 6),
        "switchover_median_s": round(switch, 6),
        "switchover_max_s": round(max(r["switchover_s"] for r in runs), 6),
        "switchover_x_cp": round(switch / cp_s, 6),
    }


def cross_fs(base: Path, args: argparse.Namespace, db: str) -> dict[str, object]:
    mnt = Path(tempfile.mkdtemp(prefix="sharemig-bench-tmpfs-"))
    size_mib = int(args.cross_size_gib * 1024 * 3) + 256
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(mnt)], check=True
    )
    try:
        src_root = base / "x-pool-a"
        entries, size = make_share(src_root / "share-x", args.cross_size_gib, args.files)
        cp_s = cp_a(src_root / "share-x", mnt / "cp-baseline")
        shutil.rmtree(mnt / "cp-baseline")
        a, b = pool("xa", src_root), pool("xb", mnt / "pool-b")
        src_drv = get_driver(a)
        get_driver(b).create_instance("share-y")
        ref = MigrationRef(str(uuid.uuid4()), "share-x", b, "share-y", db_url=db)
        phase1 = timed(lambda: (src_drv.migration_start(ref), src_drv.migration_continue(ref)))
        small = sorted((src_root / "share-x" / "tree").rglob("*.dat"))
        for p in small[:: max(1, len(small) // max(1, len(small) // 100))]:
            with open(p, "ab") as fh:
                fh.write(b"changed after phase 1\n")
        switch = timed(lambda: src_drv.migration_complete(ref))
        return {
            "case": "cross_fs",
            "entries": entries,
            "bytes": size,
            "cp_a_to_tmpfs_s": round(cp_s, 3),
            "phase1_s": round(phase1, 3),
            "phase1_x_cp": round(phase1 / cp_s, 3),
            "switchover_after_1pct_changed_s": round(switch, 3),
            "switchover_x_phase1": round(switch / phase1, 3),
        }
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        mnt.rmdir()


def mount_btrfs(image: Path, where: Path, size_gib: float) -> None:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["truncate", "-s", f"{int(size_gib * 1024)}M", str(image)], check=True)
    subprocess.run(["mkfs.btrfs", "-q", "-f", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(where)], check=True)
    subprocess.run(["btrfs", "quota", "enable", str(where)], check=True)


def btrfs_pool(name: str, root: Path) -> PoolRef:
    root.mkdir(parents=True, exist_ok=True)
    return PoolRef(f"bench@btrfs#{name}", "btrfs", root.as_uri())


def change_files(root: Path, fraction: float) -> int:
    small = sorted((root / "tree").rglob("*.dat"))
    step = max(1, round(1 / fraction))
    for p in small[::step]:
        with open(p, "ab") as fh:
            fh.write(b"changed\n")
    return len(small[::step])


def synced(fn: Callable[[], object], where: Path) -> Callable[[], None]:
    """`fn` and then `sync`, so write-back is charged to what wrote it (as for `cp_a`)."""

    def run() -> None:
        fn()
        subprocess.run(["sync", "-f", str(where)], check=True)

    return run


def btrfs_case(base: Path, args: argparse.Namespace, db: str) -> dict[str, object]:
    size = args.btrfs_size_gib
    fs_a, fs_b = base / "btrfs-a", base / "btrfs-b"
    mounted = []
    try:
        for where in (fs_a, fs_b):
            mount_btrfs(where.with_suffix(".img"), where, 2.5 * size + 1)
            mounted.append(where)
        a, b = btrfs_pool("a", fs_a / "pool-a"), btrfs_pool("b", fs_b / "pool-b")
        src_drv, dst_drv = get_driver(a), get_driver(b)
        src_drv.create_instance("share-x")
        live = fs_a / "pool-a" / "share-x"
        entries, written = make_share(live, size, args.files)
        snaps = ("snap-1", "snap-2", "snap-3")
        for sid in snaps:
            change_files(live, 0.01)
            src_drv.create_snapshot("share-x", sid)
        cp_s = cp_a(live, fs_b / "cp-baseline")
        shutil.rmtree(fs_b / "cp-baseline")
        dst_drv.create_instance("share-y")
        ref = MigrationRef(str(uuid.uuid4()), "share-x", b, "share-y", snaps, db)

        def run_phase1() -> None:
            src_drv.migration_start(ref)
            src_drv.migration_continue(ref)

        phase1 = timed(synced(run_phase1, fs_b))
        changed = change_files(live, 0.01)
        switch = timed(synced(lambda: src_drv.migration_complete(ref), fs_b))
        src_drv.delete_instance("share-x")
        # Same filesystem: the migrated share moves on to another pool of filesystem B.
        c = btrfs_pool("c", fs_b / "pool-c")
        get_driver(c).create_instance("share-z")
        moves = []
        here, there, loc, nxt = b, c, "share-y", "share-z"
        for i in range(args.reps):
            mref = MigrationRef(str(uuid.uuid4()), loc, there, nxt, snaps, db)
            drv = get_driver(here)
            drv.migration_start(mref)
            drv.migration_continue(mref)
            moves.append(timed(partial(drv.migration_complete, mref)))
            drv.delete_instance(loc)
            here, there, loc = there, here, nxt
            nxt = f"share-{i}"
            get_driver(there).create_instance(nxt)
        return {
            "case": "btrfs",
            "entries": entries,
            "bytes": written,
            "snapshots": len(snaps),
            "cp_a_live_only_s": round(cp_s, 3),
            "phase1_s": round(phase1, 3),
            "phase1_x_cp": round(phase1 / cp_s, 3),
            "files_changed": changed,
            "switchover_after_1pct_changed_s": round(switch, 3),
            "switchover_x_phase1": round(switch / phase1, 4),
            "same_fs_switchover_median_s": round(statistics.median(moves), 4),
            "same_fs_switchover_max_s": round(max(moves), 4),
        }
    finally:
        for where in mounted:
            subprocess.run(["umount", str(where)], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory (default /var/tmp)")
    ap.add_argument("--size-gib", type=float, default=3.0)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cross", action="store_true", help="also the cross-filesystem case")
    ap.add_argument("--cross-size-gib", type=float, default=1.0)
    ap.add_argument("--btrfs", action="store_true", help="also the btrfs cases (root)")
    ap.add_argument("--btrfs-size-gib", type=float, default=4.0)
    ap.add_argument("--json", type=Path, default=None, help="append result lines here")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sharemig-driver-bench-", dir=args.dir or "/var/tmp"))
    db = f"sqlite:///{base / 'bench.db'}"
    upgrade(db)
    results = []
    try:
        results.append(same_fs(base, args, db))
        if args.cross:
            results.append(cross_fs(base, args, db))
        if args.btrfs:
            results.append(btrfs_case(base, args, db))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for r in results:
        line = json.dumps(r)
        print(line)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(line + "\n")
    same = results[0]
    print(
        f"same filesystem, {same['bytes'] / (1 << 30):.2f} GiB in {same['entries']} files: "
        f"switchover median {same['switchover_median_s']:.4f} s ({same['reps']} reps), "
        f"cp -a of the same share {same['cp_a_s']:.2f} s -> {same['switchover_x_cp']:.6f} x cp",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""How close `sharemig plan`'s estimate comes to the real phase 1 it predicts.

On a scratch filesystem (a tmpfs or loop ext4 you created): a data dir with two localfs
pools; a `small` share migrated first, so this host has a measured mover rate (as any
earlier migration would leave one); then `plan` for a `standard` share, then that share's
real phase 1 (the storage steps the flow runs, in its order, without the Prefect server:
reserve, choose, copy rounds, finish). Prints the estimate, the real time and their ratio;
the target is a ratio within 0.5-2.0.

    bench/plan_bench.py --scratch /var/tmp/reports-scratch
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(
    os.environ.get("SHAREMIG_BENCH_KIT", Path(__file__).resolve().parents[2] / "shared/bench")
)


def _setup(home: Path) -> None:
    os.environ["SHAREMIG_HOME"] = str(home)
    os.environ.pop("SHAREMIG_DATABASE_URL", None)
    from storage.bootstrap import prepare_database

    prepare_database()


def _share(name: str, preset: str) -> str:
    from storage.db import session_scope
    from storage.pools import driver_for
    from storage.shares import active_instance, create_share

    with session_scope() as s:
        share = create_share(s, project_id="bench", size=5, name=name, host=POOL_A)
        root = Path(driver_for(s, POOL_A).instance_url(active_instance(s, share).location))
        share_id = share.id
    subprocess.run(
        [sys.executable, str(KIT / "gen_dataset.py"), str(root), "--preset", preset],
        check=True,
        capture_output=True,
    )
    return share_id


POOL_A, POOL_B = "sharemig@localfs#pool-a", "sharemig@localfs#pool-b"


def _request() -> object:
    from storage.migration_admission import StartRequest

    return StartRequest(
        host=POOL_B,
        preserve_metadata=False,
        preserve_snapshots=False,
        writable=False,
        nondisruptive=False,
        force_host_assisted_migration=True,
    )


def _phase1(share_id: str) -> float:
    """The steps of `flows.migrate_share._phase1` for a host-assisted copy; seconds taken."""
    from storage import migration_copy as copy
    from storage import migration_lifecycle as lifecycle
    from storage.db import session_scope
    from storage.migration_admission import admit_start

    started = time.perf_counter()
    with session_scope() as s:
        mig = admit_start(s, share_id, _request(), project_id=None)  # type: ignore[arg-type]
        assert mig is not None
        migration_id = mig.id
    lifecycle.begin(migration_id, None)
    lifecycle.reserve_destination(migration_id)
    lifecycle.choose_path(migration_id)
    for _ in range(3):
        copy.host_copy_round(migration_id)
        if copy.host_finish(migration_id):
            return time.perf_counter() - started
    raise SystemExit("phase 1 did not complete in 3 rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--preset", default="standard")
    args = parser.parse_args()
    if not (KIT / "gen_dataset.py").is_file():
        raise SystemExit(f"bench kit not found at {KIT} (set SHAREMIG_BENCH_KIT)")
    _setup(args.scratch / "home")
    from storage.migration_plan import plan_migration

    warm = _share("warm-up", "small")
    print(f"small phase 1 (records this host's mover rate): {_phase1(warm):.1f} s")
    target = _share("target", args.preset)
    plan = plan_migration(target, _request())  # type: ignore[arg-type]
    print(
        f"plan for {args.preset}: {plan.files:,} files, {plan.bytes / 2**20:,.0f} MiB, "
        f"rate {plan.mover_rate_work_per_s / 2**20:.1f} MiB/s weighted over "
        f"{plan.mover_rate_runs} run(s): estimate {plan.estimate_s:.1f} s"
    )
    real = _phase1(target)
    ratio = real / plan.estimate_s
    print(f"real phase 1 of {args.preset}: {real:.1f} s; real/estimate = {ratio:.2f}")
    after = plan_migration(_share("again", "small"), _request())  # type: ignore[arg-type]
    print(f"rate after the {args.preset} run: {after.mover_rate_work_per_s / 2**20:.1f} MiB/s")
    from storage.source_freeze import frozen_under, lift_dir

    for path in frozen_under(args.scratch):  # the phase-1 copies froze their sources
        lift_dir(path)
    if not 0.5 <= ratio <= 2.0:
        raise SystemExit(f"estimate off by more than 2x ({ratio:.2f})")


if __name__ == "__main__":
    main()

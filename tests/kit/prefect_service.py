"""Real Prefect for tests: what the session fixtures of tests/conftest.py (a server, the
deployments, a worker) start, and the sharemig data dir the worker's flow runs use.

`prefect_server` runs `prefect server start` on the port tests/conftest.py put in
PREFECT_API_URL (its own PREFECT_HOME). `deployed` applies prefect.yaml exactly as
`sharemig up` does. `worker` runs a real process worker on that pool whose flow runs use the
session's sharemig data dir (`service_home`), the same one `service_env` points a test at.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

WORK_POOL = "sharemig"
BANDWIDTH = 8 << 20
"""Copy throttle (bytes/s) of the session worker's flow runs."""
PREFECT = str(Path(sys.executable).with_name("prefect"))
# Pools of the session's data dir (`service_home`): the demo inventory's and a broken one.
POOL_A = "sharemig@localfs#pool-a"
POOL_B = "sharemig@localfs#pool-b"
POOL_OBJECTS = "sharemig@objects#bucket"
POOL_BROKEN = "sharemig@localfs#broken"


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def service_db_url(home: Path) -> str:
    """SQLite in the data dir; in .ci/run's PostgreSQL step, the database it names."""
    return os.environ.get("SHAREMIG_TEST_SERVICE_DB_URL") or f"sqlite:///{home / 'sharemig.db'}"


def service_env_vars(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SHAREMIG_HOME"] = str(home)
    env.pop("SHAREMIG_DATABASE_URL", None)
    if os.environ.get("SHAREMIG_TEST_SERVICE_DB_URL"):
        env["SHAREMIG_DATABASE_URL"] = os.environ["SHAREMIG_TEST_SERVICE_DB_URL"]
    env.pop("SHAREMIG_POOLS_FILE", None)
    # Small batches so a copy spans many tasks (and a cancel can land mid-copy).
    env["SHAREMIG_BATCH_MAX_FILES"] = "64"
    env["SHAREMIG_COPY_WORKERS"] = "2"
    # Paces the copy so a cancel lands mid-copy whatever the machine's speed. The mover gives
    # each batch a fresh throttle with a second of burst (4 MiB per worker here): trees of
    # small files copy at full speed; a batch of 64 x 256 KiB files takes ~3 s.
    env["SHAREMIG_BANDWIDTH_LIMIT_BYTES"] = str(BANDWIDTH)
    return env

"""Prefect flows: migrate_share, switchover, maintenance; control.py for both front doors."""

import sys
from pathlib import Path

# Prefect 3.9's hook runner (on_cancellation/on_crashed) starts
# prefect/runner/_workspace_runtime_bootstrap.py as a script, which puts prefect/runner/ first
# on sys.path; prefect's own runner/storage.py would then shadow our `storage` package.
sys.path[:] = [
    p for p in sys.path if not (Path(p).name == "runner" and Path(p).parent.name == "prefect")
]

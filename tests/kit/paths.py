"""Where things are: the repository, the tests, and the shared bench kit (located once here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
BENCH_KIT = Path(os.environ.get("SHAREMIG_BENCH_KIT", REPO.parent / "shared" / "bench"))
"""The bench kit (gen_dataset.py, treecmp.py): `../shared/bench`, or $SHAREMIG_BENCH_KIT."""


def bench_script(name: str) -> Path:
    """A script of the bench kit; skips the test when the kit is not on this machine."""
    script = BENCH_KIT / name
    if not script.is_file():
        pytest.skip(f"{script} not found (set SHAREMIG_BENCH_KIT to the bench kit directory)")
    return script

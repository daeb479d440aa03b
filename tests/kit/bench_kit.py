"""The shared bench kit (`../shared/bench`, or $SHAREMIG_BENCH_KIT) from any test folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH_KIT = Path(
    os.environ.get("SHAREMIG_BENCH_KIT", Path(__file__).resolve().parents[3] / "shared" / "bench")
)


def _script(name: str) -> Path:
    script = BENCH_KIT / name
    if not script.is_file():
        pytest.skip(f"{script} not found (set SHAREMIG_BENCH_KIT to the bench kit directory)")
    return script


def gen_tree(target: Path, preset: str = "small") -> None:
    """The kit's seeded tree `preset` (awkward entries included) at `target`."""
    script = _script("gen_dataset.py")
    subprocess.run(
        [sys.executable, str(script), str(target), "--preset", preset],
        check=True,
        capture_output=True,
    )


def treecmp(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    """The kit's tree comparison; returncode 0 only when identical."""
    return subprocess.run(
        [sys.executable, str(_script("treecmp.py")), str(a), str(b)],
        capture_output=True,
        text=True,
    )

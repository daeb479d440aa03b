"""The bench kit's seeded trees and its tree comparer, the one way tests compare two trees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.kit.paths import bench_script


def gen_tree(target: Path, preset: str = "small") -> None:
    """The kit's seeded tree `preset` (awkward entries included) at `target`."""
    subprocess.run(
        [sys.executable, str(bench_script("gen_dataset.py")), str(target), "--preset", preset],
        check=True,
        capture_output=True,
        timeout=300,
    )


def treecmp(a: Path, b: Path, *, owner: bool = False) -> subprocess.CompletedProcess[str]:
    """The kit's tree comparison (`owner`: uid/gid too); returncode 0 only when identical."""
    args = [sys.executable, str(bench_script("treecmp.py")), str(a), str(b)]
    return subprocess.run(
        [*args, "--owner"] if owner else args, capture_output=True, text=True, timeout=300
    )


def tree_diff(a: Path, b: Path, *, owner: bool = False) -> str:
    """ "" when the two trees are identical, else the tail of treecmp's report."""
    proc = treecmp(a, b, owner=owner)
    return "" if proc.returncode == 0 else proc.stdout[-3000:] + proc.stderr[-1000:]

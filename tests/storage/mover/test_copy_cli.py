"""`sharemig copy` as a user runs it: dry run, JSON summary, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def sharemig(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHAREMIG_HOME": str(home)}
    env.pop("SHAREMIG_DATABASE_URL", None)
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "sharemig"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_copy_dry_run_then_copy_then_resume(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "a").mkdir(parents=True)
    (src / "a" / "one.txt").write_bytes(b"1" * 1000)
    (src / "two.txt").write_bytes(b"2" * 24)
    home = tmp_path / "home"

    dry = sharemig(home, "copy", str(src), str(dst), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) | {"estimate_s": 0} == {
        "entries": 4,
        "files": 2,
        "bytes": 1024,
        "estimate_s": 0,
    }
    assert not dst.exists()

    first = sharemig(home, "copy", str(src), str(dst), "--json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert (data["files_verified"], data["bytes_verified"], data["complete"]) == (2, 1024, True)
    assert (dst / "a" / "one.txt").read_bytes() == b"1" * 1000

    again = sharemig(home, "copy", str(src), str(dst))
    assert again.returncode == 0, again.stderr
    assert "2 already verified" in again.stdout

    # Someone deletes a copied file: the next run says so and copies it again.
    (dst / "a" / "one.txt").unlink()
    repair = sharemig(home, "copy", str(src), str(dst))
    assert repair.returncode == 0, repair.stderr
    assert "1 files verified by an earlier run had been removed" in " ".join(repair.stdout.split())
    assert (dst / "a" / "one.txt").read_bytes() == b"1" * 1000


def test_copy_of_a_missing_source_fails_cleanly(tmp_path: Path) -> None:
    result = sharemig(tmp_path / "home", "copy", str(tmp_path / "nope"), str(tmp_path / "dst"))
    assert result.returncode == 2
    assert "does not exist" in " ".join(result.stderr.split())  # rich wraps long lines
    assert "Traceback" not in result.stderr

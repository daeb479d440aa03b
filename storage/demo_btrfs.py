"""Two loop-backed btrfs demo pools under the data dir, for `sharemig up --demo-pools btrfs`.

Root only (mkfs, loop mounts, qgroups). The images are sparse files in `<home>/pools/`; the
mounts stay after `up` exits and are reused by the next `up`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from storage.drivers.btrfs_cli import filesystem_id
from storage.errors import PermanentError
from storage.settings import Settings

DEMO_BTRFS_GIB = 4
_STEP_TIMEOUT_S = 60.0


def _run(cmd: list[str], step: str) -> None:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_STEP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise PermanentError(f"{step}: `{' '.join(cmd)}` timed out") from None
    if proc.returncode != 0:
        raise PermanentError(f"{step}: {proc.stderr.strip() or f'exit {proc.returncode}'}")


def ensure_demo_btrfs_pools(home: Path, size_gib: int = DEMO_BTRFS_GIB) -> list[dict[str, object]]:
    """Make (or reuse) the two btrfs filesystems; their pools.yaml entries."""
    if shutil.which("mkfs.btrfs") is None:
        raise PermanentError("btrfs demo pools need btrfs-progs (apt-get install btrfs-progs)")
    entries: list[dict[str, object]] = []
    for name in ("a", "b"):
        image, mount = home / "pools" / f"btrfs-{name}.img", home / "pools" / f"btrfs-{name}"
        if filesystem_id(mount) is None:
            mount.mkdir(parents=True, exist_ok=True)
            step = f"btrfs demo pool {name}"
            if not image.exists():
                _run(["truncate", "-s", f"{size_gib}G", str(image)], f"{step}: image")
                _run(["mkfs.btrfs", "-q", str(image)], f"{step}: mkfs.btrfs")
            _run(["mount", "-o", "loop", str(image), str(mount)], f"{step}: loop mount (root?)")
            _run(["btrfs", "quota", "enable", str(mount)], f"{step}: btrfs quota enable")
        (mount / "pool").mkdir(exist_ok=True)
        entries.append(
            {
                "name": f"sharemig@btrfs#pool-{name}",
                "driver": "btrfs",
                "url": (mount / "pool").as_uri(),
                "capacity_gb": size_gib,
            }
        )
    return entries


def add_demo_btrfs_pools(settings: Settings) -> list[str]:
    """Add the btrfs demo pools to the inventory where missing; the names it added."""
    path = settings.pools_path
    inventory = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    pools: list[dict[str, object]] = inventory.setdefault("pools", [])
    known = {p.get("name") for p in pools}
    added = [e for e in ensure_demo_btrfs_pools(settings.home) if e["name"] not in known]
    if added:
        pools.extend(added)
        path.write_text(yaml.safe_dump(inventory, sort_keys=False), encoding="utf-8")
    return [str(e["name"]) for e in added]

"""Manifests of ended migrations are kept for the retention period, then pruned."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from storage.db import session_scope
from storage.models import CopyJob, ManifestEntry, Migration
from storage.models.base import utcnow


def _rows(db_url: str, job_id: str) -> int:
    with session_scope(db_url) as s:
        count = select(func.count()).where(ManifestEntry.job_id == job_id)
        return int(s.scalar(count) or 0)


def test_an_ended_migrations_manifest_is_pruned_after_the_retention_period(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inventory_yaml: str
) -> None:
    from storage import manifest_retention
    from storage.catalog import ensure_default_share_type
    from storage.inventory import parse_inventory, sync_inventory
    from storage.settings import reset_settings

    with session_scope(db_url) as s:
        sync_inventory(s, parse_inventory(inventory_yaml))
        ensure_default_share_type(s)
    monkeypatch.setattr(manifest_retention, "PRUNE_CHUNK", 3)  # several chunks per manifest
    monkeypatch.setenv("SHAREMIG_MANIFEST_RETENTION_S", "3600")
    reset_settings()
    from storage.mover import plan_copy

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for i in range(10):
        (src / f"f{i}").write_bytes(b"z")
    ended, active = _migration(db_url, "ended"), _migration(db_url, "active")
    for mig in (ended, active):
        plan_copy(mig, src.as_uri(), (dst / mig).as_uri(), db_url=db_url)
        assert _rows(db_url, mig) == 11
    now = utcnow()
    with session_scope(db_url) as s:
        s.execute(
            update(Migration)
            .where(Migration.id == ended)
            .values(active=False, outcome="migration_success", finished_at=now)
        )
    # Within the retention period: kept (another engineer's `sharemig report` reads it).
    assert manifest_retention.prune_ended_manifests(db_url=db_url) == 0
    assert _rows(db_url, ended) == 11
    later = now + timedelta(seconds=3601)
    assert manifest_retention.prune_ended_manifests(now=later, db_url=db_url) == 11
    assert _rows(db_url, ended) == 0 and _rows(db_url, active) == 11
    with session_scope(db_url) as s:
        assert s.get(CopyJob, ended) is None and s.get(CopyJob, active) is not None
    assert manifest_retention.prune_ended_manifests(now=later, db_url=db_url) == 0


def _migration(db_url: str, name: str) -> str:
    """A migration row of a share on pool a (its copy job is named after it)."""
    from storage.shares import active_instance, create_share

    with session_scope(db_url) as s:
        share = create_share(s, project_id="p", size=1, host="h1@lfs#a", name=name)
        mig = Migration(
            share_id=share.id,
            source_instance_id=active_instance(s, share).id,
            dest_host="h1@lfs#b",
            mechanism="host",
        )
        s.add(mig)
        s.flush()
        return mig.id

"""The Alembic revisions build exactly the models' schema, and rows round-trip."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.db import get_engine, session_scope
from storage.models import Base, CopyJob, ManifestEntry, Migration, Share, ShareInstance


def test_upgrade_from_empty_matches_models(db_url: str) -> None:
    with get_engine(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(db_url: str) -> None:
    from storage.db import upgrade

    upgrade(db_url)
    with get_engine(db_url).connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is not None


def test_sqlite_runs_in_wal_mode(db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite pragmas; this run is against PostgreSQL")
    with get_engine(db_url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_share_migration_and_manifest_round_trip(session: Session, db_url: str) -> None:
    from storage.shares import create_share

    share = create_share(session, project_id="p1", size=1, name="docs", metadata={"k": "v"})
    session.add(
        Migration(share_id=share.id, source_instance_id="x", dest_host="h1@lfs#b", writable=True)
    )
    job = CopyJob(source_url="/src", dest_url="memory://dst")
    session.add(job)
    session.flush()
    odd = b"dir/caf\xe9\nname*?[x]"
    session.add(
        ManifestEntry(
            job_id=job.id,
            path=odd,
            path_key="k1",
            kind="file",
            size=3,
            mtime_ns=-1_000_000_001,
            mode=0o100644,
            link_target=b"\xff",
        )
    )
    session.commit()

    with session_scope(db_url) as s2:
        got = s2.get(Share, share.id)
        assert got is not None and got.metadata_ == {"k": "v"} and got.status == "available"
        inst = s2.scalar(select(ShareInstance).where(ShareInstance.share_id == share.id))
        assert inst is not None and inst.pool_name == got.host
        mig = s2.scalar(select(Migration).where(Migration.share_id == share.id))
        assert mig is not None and mig.writable and not mig.nondisruptive and mig.progress == 0
        entry = s2.scalar(select(ManifestEntry).where(ManifestEntry.job_id == job.id))
        assert entry is not None
        assert entry.path == odd and entry.link_target == b"\xff"
        assert entry.mtime_ns == -1_000_000_001

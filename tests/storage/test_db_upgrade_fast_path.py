"""`upgrade()` skips Alembic when the database is at the shipped head, and only then."""

from __future__ import annotations

import subprocess
import sys

from alembic.script import ScriptDirectory
from sqlalchemy import text

from storage.db import alembic_config, current_revisions, get_engine, head_revisions, upgrade

_PROBE = (
    "import sys; from storage.db import upgrade; upgrade(sys.argv[1]); "
    "print('alembic' in sys.modules)"
)


def _imports_alembic(url: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, url], capture_output=True, text=True, check=True
    )
    return out.stdout.strip() == "True"


def test_head_revisions_match_alembic() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert head_revisions() == frozenset(script.get_heads())


def test_current_schema_skips_alembic(db_url: str) -> None:
    assert current_revisions(db_url) == head_revisions()
    assert not _imports_alembic(db_url)


def test_unstamped_schema_runs_alembic(db_url: str) -> None:
    from storage.models import Base

    engine = get_engine(db_url)
    Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
    assert current_revisions(db_url) == frozenset()
    assert _imports_alembic(db_url)
    assert current_revisions(db_url) == head_revisions()


def test_missing_schema_runs_alembic(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    assert current_revisions(url) is None
    assert _imports_alembic(url)
    assert current_revisions(url) == head_revisions()
    upgrade(url)
    assert current_revisions(url) == head_revisions()

"""Engines, sessions and schema upgrades: SQLite by default (WAL, busy timeout), any URL works."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from storage.settings import get_settings

_MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    """A new engine for `url`; SQLite files get WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for `url` (default: settings), created on first use."""
    url = url or get_settings().db_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One transaction: commits on success, rolls back on any exception."""
    factory = sessionmaker(bind=get_engine(url), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", (url or get_settings().db_url).replace("%", "%%"))
    return cfg


_REVISION_LINE = re.compile(
    r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(?:'([^']*)'|\"([^\"]*)\"|(None))\s*$", re.M
)


def head_revisions() -> frozenset[str] | None:
    """The head revision ids of the migrations shipped in `storage/migrations/versions/`, read
    from the files' `revision = ...` / `down_revision = ...` lines without importing Alembic;
    None when a file does not spell them as a plain string (or None), e.g. a merge revision."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS_DIR / "versions").glob("*.py"):
        found = {m[1]: m[2] or m[3] or None for m in _REVISION_LINE.finditer(path.read_text())}
        if "revision" not in found or "down_revision" not in found or not found["revision"]:
            return None
        revisions.add(found["revision"])
        if found["down_revision"]:
            parents.add(found["down_revision"])
    heads = frozenset(revisions - parents)
    return heads or None


def current_revisions(url: str | None = None) -> frozenset[str] | None:
    """The revision ids stamped in the database at `url`; None when it has no version table."""
    try:
        with get_engine(url).connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except SQLAlchemyError:
        return None
    return frozenset(str(r[0]) for r in rows)


def upgrade(url: str | None = None) -> None:
    """Bring the database at `url` to the newest schema revision (idempotent).

    A database already at the shipped head returns without importing Alembic (~0.2 s of every
    `sharemig copy` start); only a missing or older schema runs the migrations."""
    url = url or get_settings().db_url
    heads = head_revisions()
    if heads is not None and current_revisions(url) == heads:
        return
    from alembic import command

    cfg = alembic_config(url)
    with get_engine(url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

"""Bulk statements on the raw DB-API cursor: the manifest's hot path skips per-row ORM work.

SQLAlchemy's per-row parameter processing cost more than SQLite's own work for 20,000-row
batches; plain `executemany` with positional parameters is portable (SQLite and psycopg).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session


def _native(session: Session, sql: str) -> str:
    style = session.connection().dialect.paramstyle
    if style in ("format", "pyformat"):
        return sql.replace("?", "%s")
    if style != "qmark":
        raise NotImplementedError(f"paramstyle {style} is not supported for bulk statements")
    return sql


def fetchall(session: Session, sql: str, params: Sequence[Any]) -> list[Any]:
    """Rows of `sql` (written with `?` placeholders) as plain DB-API tuples."""
    return list(session.connection().exec_driver_sql(_native(session, sql), tuple(params)))


def executemany(session: Session, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run `sql` (written with `?` placeholders) once per row, in the session's transaction."""
    if not rows:
        return
    session.connection().exec_driver_sql(_native(session, sql), list(rows))

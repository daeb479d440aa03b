"""Bulk statements on the raw DB-API cursor: the manifest's hot path skips per-row ORM work.

SQLAlchemy's per-row parameter processing cost more than SQLite's own work for 20,000-row
batches; plain `executemany` with positional parameters is portable (SQLite and psycopg).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session


def executemany(session: Session, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run `sql` (written with `?` placeholders) once per row, in the session's transaction."""
    if not rows:
        return
    conn = session.connection()
    style = conn.dialect.paramstyle
    if style in ("format", "pyformat"):
        sql = sql.replace("?", "%s")
    elif style != "qmark":
        raise NotImplementedError(f"paramstyle {style} is not supported for bulk writes")
    conn.exec_driver_sql(sql, list(rows))

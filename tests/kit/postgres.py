"""A fresh PostgreSQL database per test, on the server `.ci/postgres` starts.

`SHAREMIG_TEST_PG_URL` names a user allowed to create databases. With `SHAREMIG_TEST_DB=postgres`
every `sharemig_home` (tests/conftest.py) points SHAREMIG_DATABASE_URL at a new database, so
the storage suites run unchanged against PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_URL_ENV = "SHAREMIG_TEST_PG_URL"


def postgres_requested() -> bool:
    return os.environ.get("SHAREMIG_TEST_DB") == "postgres"


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, empty database on the server at $SHAREMIG_TEST_PG_URL; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = make_url(os.environ[PG_URL_ENV])
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        from storage.db import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

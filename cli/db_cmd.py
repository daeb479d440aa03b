"""`sharemig db upgrade`: bring sharemig's database to the newest schema."""

from __future__ import annotations

import typer

from cli.app import app
from cli.output import console, friendly_errors

db_app = typer.Typer(help="sharemig's own database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade() -> None:
    """Create or upgrade the database (SHAREMIG_DATABASE_URL; default SQLite in SHAREMIG_HOME)."""
    from storage.db import upgrade as run_upgrade
    from storage.settings import get_settings

    with friendly_errors():
        run_upgrade()
    console.print(f"database at {get_settings().db_url} is up to date")

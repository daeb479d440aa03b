"""Entry point of the `sharemig` command: imports every command module, then runs the app."""

from __future__ import annotations

from cli import db_cmd, pools_cmd  # noqa: F401  (modules register their commands)
from cli.app import app

__all__ = ["app"]

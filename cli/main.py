"""Entry point of the `sharemig` command: imports every command module, then runs the app."""

from __future__ import annotations

from cli import api_cmd, copy_cmd, db_cmd, pools_cmd, token_cmd  # noqa: F401  (they register commands)
from cli.app import app

__all__ = ["app"]

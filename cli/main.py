"""Entry point of the `sharemig` command: imports every command module, then runs the app."""

from __future__ import annotations

from cli import (  # noqa: F401  (they register commands)
    api_cmd,
    copy_cmd,
    db_cmd,
    demo_cmd,
    keystone_cmd,
    migrate_cmd,
    plan_cmd,
    pools_cmd,
    report_cmd,
    token_cmd,
    up_cmd,
)
from cli.app import app

__all__ = ["app"]

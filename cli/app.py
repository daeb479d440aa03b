"""The `sharemig` Typer application object; command modules register themselves on it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="sharemig",
    help="Move file shares between storage pools, Manila Share Migration API compatible.",
    no_args_is_help=True,
    add_completion=False,
)

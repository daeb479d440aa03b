"""How the CLI prints: rich tables on a terminal, JSON for scripts, errors without tracebacks."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from storage.errors import SharemigError

console = Console()
err_console = Console(stderr=True)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def human_seconds(s: float) -> str:
    """`1:02:03` / `2:03`: a duration or ETA as people read it."""
    whole = max(0, round(s))
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn sharemig errors into a one-line message and exit code 1 (2 for bad input)."""
    from storage.errors import InvalidInputError

    try:
        yield
    except SharemigError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2 if isinstance(exc, InvalidInputError) else 1) from None

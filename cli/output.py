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

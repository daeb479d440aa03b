"""`sharemig report SHARE`: a migration's summary and its every file, with both hashes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import typer

from cli.app import app
from cli.output import err_console, friendly_errors

FORMATS = ("json", "csv")


@app.command("report")
def report(
    share: str = typer.Argument(..., help="Share id."),
    fmt: str = typer.Option("json", "--format", help="json or csv."),
    output: Path | None = typer.Option(None, "--output", help="Write here instead of stdout."),
) -> None:
    """The share's last migration: summary (files, bytes, links, re-copies, repairs, duration,
    throughput) and one row per manifest entry (path, kind, size, mtime_ns, source and
    destination xxh3-128, state). Exit 2 for an unknown share or one without a manifest."""
    if fmt not in FORMATS:
        err_console.print(f"[red]error:[/red] --format must be json or csv, not {fmt!r}")
        raise typer.Exit(2)
    with friendly_errors():
        from storage.bootstrap import prepare_database
        from storage.errors import NotFoundError
        from storage.migration_report import csv_chunks, entry_rows, json_chunks, share_summary

        prepare_database()
        try:
            summary, job_id = share_summary(share)
        except NotFoundError as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        chunks = (json_chunks if fmt == "json" else csv_chunks)(summary, entry_rows(job_id))
        if output is None:
            _write(sys.stdout, chunks)
            return
        with output.open("w", encoding="utf-8", newline="") as out:
            _write(out, chunks)
    err_console.print(f"report of share {share}: {summary.entries:,} entries written to {output}")


def _write(out: TextIO, chunks: Iterator[str]) -> None:
    for piece in chunks:
        out.write(piece)

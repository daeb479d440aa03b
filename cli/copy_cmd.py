"""`sharemig copy SRC DST`: the verified data mover on its own (like `rclone copy --checksum`)."""

from __future__ import annotations

import sys
import time
from typing import Any

import typer

from cli.app import app
from cli.output import console, err_console, friendly_errors, human_bytes, print_json

# A rough model for --dry-run: local copies here run at about this speed per byte and per file.
ESTIMATE_BYTES_PER_S = 500 * 2**20
ESTIMATE_FILES_PER_S = 10_000


def _dry_run(source: str) -> dict[str, Any]:
    from storage.mover.census import count_tree

    counted = count_tree(source)
    estimate = counted.bytes / ESTIMATE_BYTES_PER_S + counted.entries / ESTIMATE_FILES_PER_S
    return {
        "entries": counted.entries,
        "files": counted.files,
        "bytes": counted.bytes,
        "estimate_s": round(estimate, 1),
    }


@app.command("copy")
def copy(
    source: str = typer.Argument(..., help="Source directory: local path or fsspec URL."),
    dest: str = typer.Argument(..., help="Destination: local path or fsspec URL."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count files and bytes, copy nothing."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    workers: int | None = typer.Option(None, "--workers", help="Parallel batches."),
    bwlimit: int | None = typer.Option(None, "--bwlimit", help="Bandwidth limit, bytes/s."),
    job_id: str | None = typer.Option(None, "--job-id", help="Resume this job (default: by URLs)."),
) -> None:
    """Copy SRC to DST, verifying every file by xxh3_128; a re-run resumes and syncs changes.

    Exits 1 when any file is left unverified (failed, or changed while being copied).
    """
    with friendly_errors():
        if dry_run:
            counts = _dry_run(source)
            if json_out:
                print_json(counts)
            else:
                console.print(
                    f"would copy {counts['files']:,} files ({human_bytes(counts['bytes'])}), "
                    f"{counts['entries']:,} entries; estimate ~{counts['estimate_s']} s"
                )
            return
        from storage.db import upgrade

        upgrade()
        summary = _run_with_bar(source, dest, workers, bwlimit, job_id, show=not json_out)
    data = summary.model_dump()
    data["throughput_bps"] = round(summary.throughput_bps)
    if json_out:
        print_json(data)
    else:
        console.print(
            f"{summary.files:,} files, {human_bytes(summary.bytes)}: "
            f"{summary.files_verified:,} verified ({summary.files_copied:,} copied now, "
            f"{summary.files_already_verified:,} already verified), {summary.skipped} skipped, "
            f"{summary.removed} removed, {len(summary.failed)} failed; "
            f"{human_bytes(summary.throughput_bps)}/s in {summary.seconds:.1f} s"
        )
        if summary.repaired:
            console.print(
                f"[yellow]{summary.repaired:,} files verified by an earlier run had been removed "
                "or altered at the destination; copied again[/yellow]"
            )
        if summary.not_preserved:
            lost = ", ".join(f"{k}={v}" for k, v in sorted(summary.not_preserved.items()))
            console.print(f"not kept by the destination: {lost}")
        for line in summary.failed[:20]:
            err_console.print(f"[red]failed:[/red] {line}")
    if not summary.complete:
        raise typer.Exit(1)


def _run_with_bar(
    source: str,
    dest: str,
    workers: int | None,
    bwlimit: int | None,
    job_id: str | None,
    show: bool,
) -> Any:
    from storage.mover import run_copy
    from storage.progress import copy_rate

    if not (show and sys.stderr.isatty()):
        return run_copy(source, dest, job_id=job_id, workers=workers, bandwidth_limit=bwlimit)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("copying", total=100)

        def update(p: Any) -> None:
            rate = copy_rate(p, time.monotonic() - started)
            bar.update(
                task,
                completed=p.percent,
                description=f"{p.files_verified:,}/{p.files_planned:,} files, "
                f"{human_bytes(rate.bytes_per_s or 0)}/s",
            )

        return run_copy(
            source, dest, job_id=job_id, workers=workers, bandwidth_limit=bwlimit, progress=update
        )

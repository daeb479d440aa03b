"""`sharemig migrate / status / approve / reject / cancel / rollback / shares`: migrations
from a shell.

Every action goes through `flows.control`, the same door the Manila API shim uses.
"""

from __future__ import annotations

import os
import time
from typing import Any

import typer

from cli.app import app
from cli.output import (
    console,
    friendly_errors,
    human_bytes,
    human_seconds,
    print_json,
    print_table,
)
from storage import migration_state


def _prefect_env() -> None:
    """Point Prefect at the local server of `sharemig up` unless PREFECT_API_URL says otherwise.

    Must run before the first `import prefect` (Prefect reads its settings at import).
    """
    from cli.endpoints import prefect_api_url
    from storage.settings import get_settings

    settings = get_settings()
    running = prefect_api_url(settings.home)  # where `up` on this data dir put it
    os.environ.setdefault(
        "PREFECT_API_URL", running or f"http://127.0.0.1:{settings.prefect_port}/api"
    )


def _ready() -> None:
    from storage.bootstrap import prepare_database

    _prefect_env()
    prepare_database()


def _share_rows(share_id: str | None) -> list[dict[str, Any]]:
    from storage.db import session_scope
    from storage.migration_admission import active_migration
    from storage.models.base import aware
    from storage.retention import retained_instance
    from storage.shares import get_share, list_shares

    with session_scope() as s:
        shares = [get_share(s, share_id)] if share_id else list_shares(s, None)
        rows = []
        for share in shares:
            mig = active_migration(s, share.id)
            kept = retained_instance(s, share.id)
            rows.append(
                {
                    "id": share.id,
                    "name": share.name,
                    "size_gb": share.size,
                    "status": share.status,
                    "task_state": share.task_state,
                    "host": share.host,
                    "destination": mig.dest_host if mig else None,
                    "mechanism": mig.mechanism if mig else None,
                    "flow_run_id": mig.flow_run_id if mig else None,
                    "retained_on": kept.pool_name if kept else None,
                    "retained_until": (
                        aware(kept.retained_until).isoformat(timespec="seconds")
                        if kept and kept.retained_until
                        else None
                    ),
                }
            )
        return rows


@app.command("migrate")
def migrate(
    share: str = typer.Argument(..., help="Share id."),
    host: str = typer.Argument(..., help="Destination pool, host@backend#pool."),
    writable: bool = typer.Option(False, help="Keep the share writable during phase 1."),
    preserve_metadata: bool = typer.Option(False, help="Demand metadata preservation."),
    preserve_snapshots: bool = typer.Option(False, help="Carry snapshots along."),
    nondisruptive: bool = typer.Option(False, help="Demand no client disruption."),
    force_host_assisted: bool = typer.Option(False, help="Skip the driver path."),
    new_share_type: str | None = typer.Option(None, help="Retype while migrating."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show the plan (`sharemig plan`); start nothing."
    ),
) -> None:
    """Start migrating SHARE to HOST; phase 1 runs, then it waits for `sharemig approve`."""
    if dry_run:
        from cli.plan_cmd import run_plan

        flags = dict(
            writable=writable,
            preserve_metadata=preserve_metadata,
            preserve_snapshots=preserve_snapshots,
            nondisruptive=nondisruptive,
            force_host_assisted_migration=force_host_assisted,
            new_share_type_id=new_share_type,
        )
        run_plan(share, host, flags, json_out=json_out)
        return
    with friendly_errors():
        _ready()
        from flows.control import StartRequest, start_migration

        req = StartRequest(
            host=host,
            writable=writable,
            preserve_metadata=preserve_metadata,
            preserve_snapshots=preserve_snapshots,
            nondisruptive=nondisruptive,
            force_host_assisted_migration=force_host_assisted,
            new_share_type_id=new_share_type,
        )
        outcome = start_migration(share, req)
    result = {
        "share_id": share,
        "migration_id": outcome.migration_id,
        "flow_run_id": outcome.flow_run_id,
        "noop": outcome.noop,
    }
    if json_out:
        print_json(result)
    elif outcome.noop:
        console.print(f"share {share} already lives on {host}: nothing to do")
    else:
        console.print(
            f"migration {outcome.migration_id} started (flow run {outcome.flow_run_id}); "
            f"watch it with `sharemig status {share} --watch`"
        )


@app.command("status")
def status(
    share: str | None = typer.Argument(None, help="Share id (all shares when omitted)."),
    watch: bool = typer.Option(False, "--watch", help="Follow progress until phase 1 is done."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Migration state of one share (with progress) or of every share."""
    with friendly_errors():
        _ready()
        if share and watch:
            _watch(share)
            return
        rows = _share_rows(share)
        if share and rows[0]["task_state"]:
            from flows.control import migration_progress

            view = migration_progress(share)
            rows[0].update(total_progress=view.total_progress, details=view.details)
    if json_out:
        print_json(rows[0] if share else rows)
        return
    cols = ["id", "status", "task_state", "host", "destination", "mechanism"]
    if share:
        cols.append("total_progress")
    print_table("migrations", cols, [[r.get(c) for c in cols] for r in rows])


def pace_text(details: dict[str, Any]) -> str:
    """`12.3 MiB/s, 40.0 files/s, 0:42 left` from the API's `details` (what the API shows)."""
    rate, files, eta = (
        details.get(k) for k in ("bytes_per_second", "files_per_second", "eta_seconds")
    )
    parts = []
    if isinstance(rate, int | float):
        parts.append(f"{human_bytes(rate)}/s")
    if isinstance(files, int | float):
        parts.append(f"{files} files/s")
    if isinstance(eta, int | float):
        parts.append(f"{human_seconds(eta)} left")
    return ", ".join(parts)


def _watch(share: str) -> None:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from flows.control import migration_progress

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[pace]}"),
        console=console,
    ) as bar:
        task = bar.add_task(share, total=100, pace="")
        while True:
            view = migration_progress(share)
            bar.update(
                task,
                completed=view.total_progress,
                description=str(view.task_state),
                pace=pace_text(view.details),
            )
            # Watch phase 1 up to the wait for approval, or the switchover to its end.
            state = view.task_state
            if state is None or state in migration_state.TERMINAL | migration_state.PHASE1_DONE:
                break
            time.sleep(1.0)
    console.print(f"{share}: {view.task_state}")


@app.command("approve")
def approve(
    share: str = typer.Argument(..., help="Share id."),
    reason: str = typer.Option("approved with the sharemig CLI", help="Why (recorded)."),
) -> None:
    """Approve the switchover of a migration that finished phase 1."""
    with friendly_errors():
        _ready()
        from flows.control import complete_migration

        complete_migration(share, reason=reason)
    console.print(f"switchover of {share} approved")


@app.command("reject")
def reject(
    share: str = typer.Argument(..., help="Share id."),
    reason: str = typer.Option(..., help="Why (recorded on the migration)."),
) -> None:
    """Reject a migration: the destination is removed, the share stays where it is."""
    with friendly_errors():
        _ready()
        from flows.control import reject_migration

        reject_migration(share, reason)
    console.print(f"migration of {share} rejected")


@app.command("cancel")
def cancel(share: str = typer.Argument(..., help="Share id.")) -> None:
    """Cancel a migration at any point before its switchover."""
    with friendly_errors():
        _ready()
        from flows.control import cancel_migration

        cancel_migration(share, reason="cancelled with the sharemig CLI")
    console.print(f"cancel of {share}'s migration requested")


@app.command("rollback")
def rollback(
    share: str = typer.Argument(..., help="Share id."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Move SHARE back onto the instance its last switchover retained (within the window
    SHAREMIG_RETAIN_SOURCE_S set): only what changed since is copied back, verified, then
    switched. The command is the approval: there is no wait for `approve`."""
    with friendly_errors():
        _ready()
        from flows.control import start_rollback

        outcome = start_rollback(share)
    result = {
        "share_id": share,
        "migration_id": outcome.migration_id,
        "flow_run_id": outcome.flow_run_id,
    }
    if json_out:
        print_json(result)
        return
    console.print(
        f"rollback {outcome.migration_id} of share {share} started (flow run "
        f"{outcome.flow_run_id}); watch it with `sharemig status {share} --watch`"
    )


@app.command("shares")
def shares(json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """List shares with their pool and migration state."""
    with friendly_errors():
        _ready()
        rows = _share_rows(None)
    if json_out:
        print_json(rows)
        return
    cols = ["id", "name", "size_gb", "status", "task_state", "host"]
    if any(r["retained_on"] for r in rows):
        cols += ["retained_on", "retained_until"]
    print_table("shares", cols, [[r[c] for c in cols] for r in rows])

"""`sharemig plan SHARE HOST` and `migrate --dry-run`: what a migration would do; no changes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer

from cli.app import app
from cli.output import console, friendly_errors, human_bytes, human_seconds, print_json


def show_plan(plan: Any, *, json_out: bool) -> None:
    if json_out:
        print_json(asdict(plan))
        return
    rate = plan.mover_rate_work_per_s
    measured = (
        f"measured over {plan.mover_rate_runs} copies on {plan.mover_rate_host}"
        if plan.mover_rate_runs
        else f"default: no copy measured on {plan.mover_rate_host} yet"
    )
    lines = [
        f"plan: share {plan.share_id} from {plan.source_host} to {plan.destination_host}",
        f"  mechanism:  {plan.mechanism or 'none (it would end in migration_error)'}",
        f"  why:        {plan.decision}",
        f"  capacity:   {plan.capacity}",
        f"  source:     {plan.files:,} files, {human_bytes(plan.bytes)}, {plan.dirs:,} dirs, "
        f"{plan.links:,} links, {plan.special_skipped:,} special files (skipped)",
        f"  estimate:   {human_seconds(plan.estimate_s)} ({plan.estimate_s} s) at "
        f"{human_bytes(rate)}/s weighted ({measured})",
        f"  freeze:     {plan.freeze}",
        "  nothing was started, created or reserved",
    ]
    console.print("\n".join(lines), markup=False, highlight=False)


@app.command("plan")
def plan(
    share: str = typer.Argument(..., help="Share id."),
    host: str = typer.Argument(..., help="Destination pool, host@backend#pool."),
    writable: bool = typer.Option(False, help="Keep the share writable during phase 1."),
    preserve_metadata: bool = typer.Option(False, help="Demand metadata preservation."),
    preserve_snapshots: bool = typer.Option(False, help="Carry snapshots along."),
    nondisruptive: bool = typer.Option(False, help="Demand no client disruption."),
    force_host_assisted: bool = typer.Option(False, help="Skip the driver path."),
    new_share_type: str | None = typer.Option(None, help="Retype while migrating."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """What migrating SHARE to HOST would do: mechanism and why, capacity, files and bytes,
    an estimate from this host's measured mover rate, whether the source can be frozen."""
    run_plan(
        share,
        host,
        dict(
            writable=writable,
            preserve_metadata=preserve_metadata,
            preserve_snapshots=preserve_snapshots,
            nondisruptive=nondisruptive,
            force_host_assisted_migration=force_host_assisted,
            new_share_type_id=new_share_type,
        ),
        json_out=json_out,
    )


def run_plan(share: str, host: str, flags: dict[str, Any], *, json_out: bool) -> None:
    with friendly_errors():
        from storage.bootstrap import prepare_database
        from storage.migration_admission import StartRequest
        from storage.migration_plan import plan_migration

        prepare_database()
        result = plan_migration(share, StartRequest(host=host, **flags))
    show_plan(result, json_out=json_out)

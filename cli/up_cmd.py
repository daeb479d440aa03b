"""`sharemig up`: a local Prefect server, worker(s) and the Manila API shim, ready in one command.

Ctrl-C (or SIGTERM/SIGHUP) stops every child, including flow-run processes the worker started.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from cli.app import app
from cli.endpoints import Endpoints, read_endpoints
from cli.output import console, err_console
from cli.supervisor import StartupError
from cli.up_stack import Stack, UpOptions
from storage.errors import NotFoundError, SharemigError

if TYPE_CHECKING:
    from storage.settings import Settings

RECOVERY_INTERVAL_S = 60.0


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _tokens(home: Path, project: str) -> tuple[str, str]:
    """The admin and member tokens of the last `up` on `home` if still valid, else new ones.

    Reusing them keeps the tokens an operator exported in a shell working across restarts,
    and keeps the tokens file from growing with every `up`.
    """
    from storage.tokens import create_token, lookup_token

    try:
        last: Endpoints | None = read_endpoints(home)
    except NotFoundError:
        last = None
    if last is not None and last.project_id == project:
        admin, member = lookup_token(last.admin_token), lookup_token(last.member_token)
        admin_ok = admin is not None and admin.is_admin and admin.project_id == project
        member_ok = member is not None and member.project_id == project and not member.is_admin
        if admin_ok and member_ok:
            return last.admin_token, last.member_token
    return (
        create_token(project, admin=True, note="sharemig up (admin)"),
        create_token(project, note="sharemig up (member)"),
    )


def _banner(ep: Endpoints, stack: Stack, path: Path) -> None:
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_row("Prefect UI", f"[link={ep.prefect_url}]{ep.prefect_url}[/link]")
    table.add_row("Manila endpoint", ep.manila_endpoint)
    table.add_row("project id", ep.project_id)
    table.add_row("admin token", ep.admin_token)
    table.add_row("member token", ep.member_token)
    table.add_row("endpoints file", str(path))
    table.add_row("logs", str(stack.logs))
    console.print()
    console.print("[bold green]sharemig is up[/bold green]")
    console.print(table)
    console.print()
    console.print(
        "Next: [bold]sharemig demo[/bold] in another terminal (same SHAREMIG_HOME). "
        "Ctrl-C here stops everything."
    )


@app.command("up")
def up(
    home: Path | None = typer.Option(
        None, "--home", help="Data dir (default: $SHAREMIG_HOME, else ~/.local/share/sharemig)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address the services bind to."),
    api_port: int | None = typer.Option(None, "--api-port", help="API shim port (8786)."),
    prefect_port: int | None = typer.Option(
        None, "--prefect-port", help="Local Prefect server port (4200)."
    ),
    prefect_api_url: str | None = typer.Option(
        None,
        "--prefect-api-url",
        help="Use this Prefect server (e.g. http://prefect:4200/api) instead of starting one.",
    ),
    prefect_database_url: str | None = typer.Option(
        None,
        "--prefect-database-url",
        help="Database of the local Prefect server, e.g. postgresql+asyncpg://u:p@db/prefect.",
    ),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="sharemig's database, e.g. postgresql+psycopg://u:p@db/sharemig (default SQLite).",
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Process workers to start."),
    project: str = typer.Option("demo", "--project", help="Project id of the printed tokens."),
    demo_pools: str = typer.Option(
        "localfs",
        "--demo-pools",
        help="localfs (default, no root) or btrfs: also two loop-backed btrfs pools (root).",
    ),
    dask_address: str | None = typer.Option(
        None,
        "--dask-address",
        help="Run copy batches on this Dask scheduler's workers (tcp://host:8786; default "
        "$SHAREMIG_DASK_ADDRESS).",
    ),
) -> None:
    """Start everything on this machine: Prefect server, worker, database, demo pools, API."""
    # Settings and Prefect read the environment on first use: set it before either is touched.
    if home is not None:
        os.environ["SHAREMIG_HOME"] = str(home.expanduser().resolve())
    if database_url:
        os.environ["SHAREMIG_DATABASE_URL"] = database_url
    if dask_address:
        os.environ["SHAREMIG_DASK_ADDRESS"] = dask_address
    from storage.settings import get_settings, reset_settings

    reset_settings()
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    _check_auth_settings(settings)
    opts = UpOptions(
        home=settings.home.resolve(),
        host=host,
        api_port=api_port or settings.api_port,
        prefect_port=prefect_port or settings.prefect_port,
        work_pool=settings.work_pool,
        project=project,
        workers=workers,
        external_prefect_api_url=prefect_api_url,
        prefect_database_url=prefect_database_url,
        database_url=settings.database_url,
    )
    stack = Stack(opts, lambda msg: console.print(f"[green]✓[/green] {msg}"))
    refusal = stack.refusal()
    if stack.orphans_stopped:
        console.print(
            f"[yellow]stopped {len(stack.orphans_stopped)} process(es) left running by the "
            f"previous `sharemig up` on {opts.home}:[/yellow] "
            + escape(", ".join(stack.orphans_stopped))
        )
    if refusal:
        err_console.print(f"[red]error:[/red] {refusal}")
        raise typer.Exit(1)
    if demo_pools not in ("localfs", "btrfs"):
        err_console.print(f"[red]error:[/red] --demo-pools is localfs or btrfs, not {demo_pools!r}")
        raise typer.Exit(2)
    if settings.dask_address:
        _check_dask(settings.dask_address)
    if demo_pools == "btrfs":
        _add_btrfs_demo_pools(settings)
    for key, value in stack.environment().items():
        if key.startswith(("PREFECT_", "SHAREMIG_")) and key != "SHAREMIG_UP_RUN":
            os.environ[key] = value
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and `kill -INT` must work.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    code = _run(stack)
    raise typer.Exit(code)


def _check_dask(address: str) -> None:
    """Stop `up` now when the Dask scheduler does not answer: every copy would fail later."""
    from storage.mover.dask_executor import connect

    try:
        client = connect(address)
    except SharemigError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
    finally:
        client.close()
    console.print(
        f"[green]✓[/green] copy batches run on the Dask scheduler {address} "
        f"({len(workers)} worker(s), {threads} thread(s) now)"
    )


def _check_auth_settings(settings: Settings) -> None:
    """Refuse to start on a policy.yaml or Keystone settings the API would fail on later."""
    from api_shim.policy import check_policy_file

    try:
        if settings.policy_path is not None:
            rules = check_policy_file(settings.policy_path)
            console.print(
                f"[green]✓[/green] policy {settings.policy_path}: {len(rules)} rule(s) "
                "override Manila's defaults"
            )
        if settings.auth == "keystone":
            from api_shim.keystone_auth import check_keystone_settings

            where = check_keystone_settings(settings)
            console.print(f"[green]✓[/green] Keystone authentication: tokens checked by {where}")
    except SharemigError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _add_btrfs_demo_pools(settings: Settings) -> None:
    from storage.bootstrap import write_demo_inventory
    from storage.demo_btrfs import add_demo_btrfs_pools

    try:
        write_demo_inventory(settings)
        added = add_demo_btrfs_pools(settings)
    except SharemigError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    names = ", ".join(added) or "already in the inventory"
    console.print(f"[green]✓[/green] btrfs demo pools (loop-mounted under the data dir): {names}")


def _run(stack: Stack) -> int:
    from flows.deploy import apply_deployments
    from storage.bootstrap import prepare_database

    console.print(f"starting sharemig on {stack.opts.home}")
    try:
        try:
            stack.start(prepare_database, lambda: apply_deployments(work_pool=stack.opts.work_pool))
            ep = stack.endpoints(*_tokens(stack.opts.home, stack.opts.project))
            _banner(ep, stack, stack.publish(ep))
            _recover()
        except (StartupError, SharemigError) as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            return 1
        return _watch(stack)
    except KeyboardInterrupt:
        return 0
    finally:
        # Further signals must not cut the clean-up short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        console.print("stopping sharemig ...")
        stack.stop()
        console.print("stopped")


def _recover() -> None:
    """Resume or cancel migrations whose flow run died (see flows.recovery); never fatal to up."""
    from flows.recovery import recover_migrations

    try:
        recovered = recover_migrations()
    except Exception as exc:  # a recovery pass must not take the service down
        err_console.print(f"[yellow]warning:[/yellow] migration recovery pass failed: {exc}")
        return
    for item in recovered:
        if item.action != "leave":
            console.print(
                f"recovered migration {item.migration_id} of share {item.share_id}: "
                f"{item.action} (its flow run was {item.run_state or 'missing'})"
            )


def _watch(stack: Stack) -> int:
    """Sleep until a signal, or until a child dies (then everything stops: no half-up state).

    Every RECOVERY_INTERVAL_S it also runs a recovery pass, so a migration whose run crashed
    while `up` was running is resumed (or cancelled) without an operator.
    """
    next_recovery = time.monotonic() + RECOVERY_INTERVAL_S
    while True:
        if time.monotonic() >= next_recovery:
            _recover()
            next_recovery = time.monotonic() + RECOVERY_INTERVAL_S
        dead = stack.dead_child()
        if dead is not None:
            err_console.print(
                f"[red]error:[/red] {dead.name} exited unexpectedly; see {dead.log_path}"
            )
            return 1
        time.sleep(0.5)

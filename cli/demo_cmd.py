"""`sharemig demo`: against a running `sharemig up`, migrate a share full of files up to the
approval wait, then say how to approve it.

It acts as a Manila client would (HTTP to the API shim with the token from endpoints.json):
create the share, write into its export location, `migration_start`, poll the progress. So a
demo exercises exactly the path python-manilaclient takes. Only the Prefect flow run id, which
the Manila API has no field for, comes from sharemig's database.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import typer

from cli.app import app
from cli.demo_tree import write_demo_tree
from cli.endpoints import Endpoints, read_endpoints
from cli.output import console, err_console, print_json
from storage import migration_state
from storage.errors import NotFoundError, SharemigError

API_VERSION = "2.99"
PHASE1_DONE = migration_state.PHASE1_DONE
ENDED = migration_state.TERMINAL


class DemoError(SharemigError):
    """The demo could not go on; the message says why and what to check."""


class _Shim:
    """A thin Manila client for the few calls the demo makes."""

    def __init__(self, ep: Endpoints) -> None:
        self.base = f"/v2/{ep.project_id}"
        self.http = httpx.Client(
            base_url=ep.api_url,
            headers={
                "X-Auth-Token": ep.admin_token,
                "X-OpenStack-Manila-API-Version": API_VERSION,
                "Accept": "application/json",
            },
            timeout=30.0,
        )

    def call(self, method: str, path: str, json: Any = None) -> Any:
        try:
            resp = self.http.request(method, self.base + path, json=json)
        except httpx.HTTPError as exc:
            raise DemoError(
                f"the API shim at {self.http.base_url} does not answer ({exc}); "
                "is `sharemig up` still running?"
            ) from None
        if resp.status_code >= 400:
            raise DemoError(f"{method} {path} answered {resp.status_code}: {resp.text}")
        return resp.json() if resp.content else None


def _mount_point(export: str) -> Path:
    """The local directory behind an export location (`host:/path` or `/path`)."""
    path = Path(export.split(":", 1)[1] if ":" in export and not export.startswith("/") else export)
    if not path.is_dir():
        raise DemoError(
            f"export location {export} is not a directory on this machine; the demo writes "
            "its files directly and needs a pool on a local path"
        )
    return path


def _destination(pools: list[dict[str, Any]], source: str, wanted: str | None) -> str:
    """`wanted`, else another pool of the source's driver (so the share's type fits there)."""
    names = [str(p["name"]) for p in pools]
    if wanted:
        return wanted
    driver = {str(p["name"]): p.get("capabilities", {}).get("driver_name") for p in pools}
    others = [n for n in names if n != source]
    if not others:
        raise DemoError("the inventory has a single pool; a migration needs two")
    return next((n for n in others if driver[n] == driver.get(source)), others[0])


def _flow_run_id(ep: Endpoints, share_id: str) -> str | None:
    """The migration's Prefect run, from sharemig's database (the one `up` uses)."""
    from storage.db import session_scope
    from storage.migration_admission import active_migration

    url = ep.database_url or f"sqlite:///{Path(ep.home) / 'sharemig.db'}"
    try:
        with session_scope(url) as session:
            mig = active_migration(session, share_id)
            return mig.flow_run_id if mig else None
    except Exception:  # a database the demo cannot reach only costs the direct link
        return None


def _follow(shim: _Shim, share_id: str, timeout: float) -> dict[str, Any]:
    """Poll migration progress with a progress bar until phase 1 is done (or it ended)."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("[bold]{task.description:<30}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("migration_starting", total=100)
        while True:
            view = shim.call("GET", f"/shares/{share_id}/migration-progress")
            state = str(view.get("task_state"))
            bar.update(task, completed=int(view.get("total_progress") or 0), description=state)
            if state in PHASE1_DONE or state in ENDED:
                return dict(view)
            if time.monotonic() > deadline:
                raise DemoError(f"phase 1 not done after {timeout:.0f}s (task_state {state})")
            time.sleep(0.5)


@app.command("demo")
def demo(
    home: Path | None = typer.Option(
        None, "--home", help="Data dir of the running `sharemig up` (default: $SHAREMIG_HOME)."
    ),
    to: str | None = typer.Option(None, "--to", help="Destination pool (host@backend#pool)."),
    host_assisted: bool = typer.Option(
        True,
        "--host-assisted/--driver-assisted",
        help="Copy with the data mover (shows progress), or let the pools' driver move it.",
    ),
    scale: float = typer.Option(1.0, "--scale", min=0.05, help="Multiply the number of files."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds to wait for phase 1."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Create a share full of files, migrate it and stop at "waiting for approval"."""
    if home is not None:
        os.environ["SHAREMIG_HOME"] = str(home.expanduser().resolve())
    from storage.settings import get_settings, reset_settings

    reset_settings()
    try:
        ep = read_endpoints(get_settings().home)
        result = _run_demo(ep, to, scale, timeout, host_assisted=host_assisted, quiet=json_out)
    except (DemoError, NotFoundError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if json_out:
        print_json(result)
    if result["task_state"] not in PHASE1_DONE:
        raise typer.Exit(1)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        console.print(text, soft_wrap=True)


def _run_demo(
    ep: Endpoints,
    to: str | None,
    scale: float,
    timeout: float,
    *,
    host_assisted: bool,
    quiet: bool,
) -> dict[str, Any]:
    shim = _Shim(ep)
    pools = shim.call("GET", "/scheduler-stats/pools/detail")["pools"]
    if to is not None and to not in {p["name"] for p in pools}:
        raise DemoError(f"no pool {to}; pools: {', '.join(p['name'] for p in pools)}")
    name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    spec = {"share_proto": "NFS", "size": 1, "name": name}
    share = shim.call("POST", "/shares", {"share": spec})["share"]
    share_id, source = share["id"], share["host"]
    exports = shim.call("GET", f"/shares/{share_id}/export_locations")["export_locations"]
    root = _mount_point(exports[0]["path"])
    _say(quiet, f"created share [bold]{name}[/bold] ({share_id}) on {source}")
    stats = write_demo_tree(root, scale=scale)
    _say(
        quiet,
        f"wrote {stats.files} files in {stats.directories} directories "
        f"({stats.bytes / 2**20:.1f} MiB) into {exports[0]['path']}",
    )
    dest = _destination(pools, source, to)
    flags = {"writable": False, "preserve_metadata": False, "preserve_snapshots": False}
    body = {
        "migration_start": {
            "host": dest,
            "nondisruptive": False,
            "force_host_assisted_migration": host_assisted,
            **flags,
        }
    }
    shim.call("POST", f"/shares/{share_id}/action", body)
    how = "host-assisted: the verified data mover" if host_assisted else "driver-assisted if able"
    _say(quiet, f"migration to [bold]{dest}[/bold] started ({how})")
    view = _poll_quietly(shim, share_id, timeout) if quiet else _follow(shim, share_id, timeout)
    run_id = _flow_run_id(ep, share_id)
    result = {
        "share_id": share_id,
        "name": name,
        "source": source,
        "destination": dest,
        "host_assisted": host_assisted,
        "task_state": view.get("task_state"),
        "total_progress": view.get("total_progress"),
        "flow_run_id": run_id,
        "flow_run_url": ep.flow_run_url(run_id) if run_id else None,
        "files": stats.files,
        "bytes": stats.bytes,
    }
    if view.get("task_state") not in PHASE1_DONE:
        err_console.print(f"[red]migration ended in {view.get('task_state')}[/red]; see the logs")
    elif not quiet:
        _how_to_approve(ep, share_id, run_id)
    return result


def _poll_quietly(shim: _Shim, share_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = dict(shim.call("GET", f"/shares/{share_id}/migration-progress"))
        if view.get("task_state") in PHASE1_DONE | ENDED or time.monotonic() > deadline:
            return view
        time.sleep(0.5)


def _how_to_approve(ep: Endpoints, share_id: str, run_id: str | None) -> None:
    ui = ep.flow_run_url(run_id) if run_id else f"{ep.prefect_url}/runs"
    osc = (
        f"openstack --os-auth-type admin_token --os-endpoint {ep.manila_endpoint} "
        f"--os-token {ep.admin_token} share migration complete {share_id}"
    )
    lines = [
        "",
        "[bold yellow]Phase 1 done: the migration is waiting for approval.[/bold yellow]",
        "Approve the switchover in any one of these ways:",
        f"  1. Prefect UI: open {ui} , click [bold]Resume[/bold], keep Approve on, Submit",
        f"  2. sharemig:   sharemig approve {share_id}",
        f"  3. Manila:     {osc}",
        f"Reject instead: sharemig reject {share_id} --reason '...'",
        f"Follow it:      sharemig status {share_id}",
    ]
    for line in lines:
        # Never wrapped: the commands must survive copy and paste.
        console.print(line, soft_wrap=True)

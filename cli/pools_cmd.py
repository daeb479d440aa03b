"""`sharemig pools`: the pool inventory with allocated and free capacity."""

from __future__ import annotations

import typer

from cli.app import app
from cli.output import friendly_errors, print_json, print_table


@app.command("pools")
def pools(json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """List pools (synced from the inventory file) with their capacity."""
    from storage.bootstrap import prepare_database
    from storage.db import session_scope
    from storage.models import Pool
    from storage.pools import allocated_gb

    with friendly_errors():
        prepare_database()
        with session_scope() as session:
            allocated = allocated_gb(session)
            rows = [
                {
                    "name": p.name,
                    "driver": p.driver,
                    "url": p.url,
                    "capacity_gb": p.capacity_gb,
                    "allocated_gb": allocated.get(p.name, 0),
                    "free_gb": p.capacity_gb - allocated.get(p.name, 0),
                    "enabled": p.enabled,
                    "max_concurrent_migrations": p.max_concurrent_migrations,
                    "bandwidth_limit_bytes": p.bandwidth_limit_bytes,
                }
                for p in session.query(Pool).order_by(Pool.name)
            ]
    if json_out:
        print_json(rows)
        return
    cols = ["name", "driver", "url", "capacity_gb", "allocated_gb", "free_gb", "enabled"]
    cols += ["max_concurrent_migrations", "bandwidth_limit_bytes"]
    headers = [*cols[:-2], "max_migrations", "bandwidth_B/s"]
    print_table("pools", headers, [[r[c] for c in cols] for r in rows])

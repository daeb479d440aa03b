"""`sharemig api`: serve the Manila-compatible API with uvicorn."""

from __future__ import annotations

import typer

from cli.app import app


@app.command("api")
def api(
    host: str | None = typer.Option(None, "--host", help="Bind address (default: settings)."),
    port: int | None = typer.Option(None, "--port", help="Port (default: settings, 8786)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Run the API shim (python-manilaclient / `openstack share` talk to it)."""
    import uvicorn

    from storage.settings import get_settings

    settings = get_settings()
    uvicorn.run(
        "api_shim.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level=log_level,
    )

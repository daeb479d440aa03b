"""`sharemig token create`: API tokens for Manila clients (no Keystone needed)."""

from __future__ import annotations

import typer

from cli.app import app
from cli.output import err_console, friendly_errors

token_app = typer.Typer(help="Tokens for the Manila-compatible API.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def create(
    project: str = typer.Option(..., "--project", help="Project the token acts for."),
    admin: bool = typer.Option(False, "--admin", help="Grant the admin role (migrations)."),
    note: str | None = typer.Option(None, "--note", help="A reminder of who holds it."),
) -> None:
    """Create a token and print it; it is shown only once (the file keeps its digest)."""
    from storage.settings import get_settings
    from storage.tokens import create_token

    with friendly_errors():
        token = create_token(project, admin=admin, note=note)
    # The token alone goes to stdout so scripts can capture it: TOKEN=$(sharemig token create ...)
    typer.echo(token)
    role = "admin" if admin else "member"
    err_console.print(
        f"[dim]{role} token for project {project}, stored (as a digest) in "
        f"{get_settings().tokens_path}; send it as X-Auth-Token or --os-token[/dim]"
    )

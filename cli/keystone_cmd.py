"""`sharemig keystone register` and `sharemig policy defaults`: putting sharemig into a cloud.

register does what the `openstack service/endpoint/user create` commands in the README do,
through keystoneauth1 with a timeout on every call, and is safe to run twice.
"""

from __future__ import annotations

from typing import Any

import typer

from cli.app import app
from cli.output import err_console, friendly_errors
from storage.errors import InvalidInputError, TransientError

keystone_app = typer.Typer(help="Running behind a real Keystone.", no_args_is_help=True)
app.add_typer(keystone_app, name="keystone")
policy_app = typer.Typer(help="Manila's policy rules as sharemig applies them.")
app.add_typer(policy_app, name="policy")


class _Identity:
    """Keystone's v3 API through an admin's keystoneauth1 session."""

    def __init__(self, session: Any, timeout_s: float) -> None:
        self.session = session
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, **body: Any) -> dict[str, Any]:
        from keystoneauth1 import exceptions

        try:
            resp = self.session.request(
                path,
                method,
                json=body or None,
                endpoint_filter={"service_type": "identity", "interface": "public"},
                timeout=self.timeout_s,
            )
        except (exceptions.ConnectFailure, exceptions.ConnectTimeout) as exc:
            raise TransientError(f"Keystone did not answer: {exc}") from None
        except exceptions.Unauthorized:
            raise InvalidInputError(
                "Keystone refused the admin credentials (check --admin-user/--admin-password)"
            ) from None
        except exceptions.HttpError as exc:
            raise InvalidInputError(f"Keystone refused {method} {path}: {exc}") from None
        return dict(resp.json()) if resp.content else {}

    def find(self, collection: str, **query: str) -> dict[str, Any] | None:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        found = self.call("GET", f"/{collection}?{qs}")[collection]
        return dict(found[0]) if found else None

    def ensure(self, collection: str, member: str, query: dict[str, str], **spec: Any) -> str:
        existing = self.find(collection, **query)
        if existing is not None:
            return str(existing["id"])
        return str(self.call("POST", f"/{collection}", **{member: spec})[member]["id"])


@keystone_app.command("register")
def register(
    endpoint: str = typer.Option(
        ..., "--endpoint", help="Where clients reach sharemig's API, e.g. http://10.0.0.5:8786."
    ),
    auth_url: str = typer.Option(..., "--auth-url", help="Keystone v3, e.g. http://ks:5000/v3."),
    admin_user: str = typer.Option("admin", "--admin-user"),
    admin_password: str = typer.Option(..., "--admin-password", envvar="OS_PASSWORD"),
    admin_project: str = typer.Option("admin", "--admin-project"),
    service_user: str = typer.Option("sharemig", "--service-user"),
    service_password: str = typer.Option(..., "--service-password"),
    service_project: str = typer.Option("service", "--service-project"),
    region: str = typer.Option("RegionOne", "--region"),
    timeout_s: float = typer.Option(10.0, "--timeout", help="Seconds per call to Keystone."),
) -> None:
    """Create the `sharev2` service, its public endpoint and the service user (idempotent)."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    auth = v3.Password(
        auth_url=auth_url,
        username=admin_user,
        password=admin_password,
        project_name=admin_project,
        user_domain_name="Default",
        project_domain_name="Default",
    )
    ks = _Identity(session.Session(auth=auth, timeout=timeout_s), timeout_s)
    url = endpoint.rstrip("/") + "/v2/%(project_id)s"
    with friendly_errors():
        service = ks.ensure(
            "services", "service", {"type": "sharev2"}, type="sharev2", name="manilav2"
        )
        if ks.find("endpoints", service_id=service, interface="public") is None:
            ks.call(
                "POST",
                "/endpoints",
                endpoint={
                    "service_id": service,
                    "interface": "public",
                    "url": url,
                    "region_id": region,
                },
            )
        project = ks.ensure(
            "projects",
            "project",
            {"name": service_project},
            name=service_project,
            domain_id="default",
        )
        user = ks.ensure(
            "users",
            "user",
            {"name": service_user},
            name=service_user,
            password=service_password,
            domain_id="default",
        )
        role = ks.find("roles", name="service")
        if role is None:
            raise InvalidInputError(
                "Keystone has no 'service' role (keystone-manage bootstrap creates it)"
            )
        ks.call("PUT", f"/projects/{project}/users/{user}/roles/{role['id']}")
    typer.echo(f"sharev2 service {service}: public endpoint {url} in {region}")
    typer.echo(f"service user {service_user} has role 'service' on project {service_project}")
    err_console.print(
        "[dim]start sharemig with SHAREMIG_AUTH=keystone "
        f"SHAREMIG_KEYSTONE_URL={auth_url} SHAREMIG_KEYSTONE_USERNAME={service_user} "
        "SHAREMIG_KEYSTONE_PASSWORD=…[/dim]"
    )


@policy_app.command("defaults")
def defaults() -> None:
    """Print every rule sharemig enforces with Manila's default, as a policy.yaml."""
    import yaml

    from api_shim.policy import DEFAULTS

    typer.echo(yaml.safe_dump(DEFAULTS, sort_keys=False, width=200), nl=False)


@policy_app.command("check")
def check(path: str = typer.Argument(..., help="The policy.yaml to check.")) -> None:
    """Parse a policy.yaml as `up` does: unknown rules and bad check strings name their line."""
    from pathlib import Path

    from api_shim.policy import check_policy_file

    with friendly_errors():
        rules = check_policy_file(Path(path))
    typer.echo(f"{path}: {len(rules)} rule(s) override Manila's defaults")

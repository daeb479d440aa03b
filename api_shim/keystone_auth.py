"""Token validation by keystonemiddleware's `auth_token`, the library every OpenStack API uses.

auth_token is WSGI middleware. The shim runs it per request (in a worker thread) around a tiny
WSGI app that only reports the identity headers auth_token set, so the FastAPI app keeps
serving under ASGI and the identity still comes from the real library: token checks, the
service user, caching, revocation and `WWW-Authenticate` all stay auth_token's.
"""

from __future__ import annotations

from typing import Any

import webob
import webob.dec
from keystoneauth1 import exceptions as ksa
from keystonemiddleware import auth_token
from oslo_config import cfg

from storage.errors import InvalidInputError, TransientError
from storage.settings import Settings
from storage.tokens import TokenInfo


class KeystoneUnavailableError(TransientError):
    """Keystone did not answer the token check in time; the request gets a 503."""


@webob.dec.wsgify  # type: ignore[untyped-decorator]
def _report_identity(req: webob.Request) -> webob.Response:
    roles = req.headers.get("X-Roles", "")
    return webob.Response(
        json={
            "status": req.headers.get("X-Identity-Status"),
            "project_id": req.headers.get("X-Project-Id"),
            "user_id": req.headers.get("X-User-Id"),
            "roles": [r.strip() for r in roles.split(",") if r.strip()],
        }
    )


def _bounded_conf(files: list[str], settings: Settings) -> cfg.ConfigOpts:
    """An oslo.config object of auth_token's options, with sharemig's bounds as defaults."""
    conf = cfg.ConfigOpts()
    for group, opts in auth_token.list_opts():
        conf.register_opts(opts, group=group)
    try:
        conf([], project="sharemig", default_config_files=files, default_config_dirs=[])
    except cfg.Error as exc:
        raise InvalidInputError(f"cannot read {', '.join(files)}: {exc}") from None
    group = "keystone_authtoken"
    conf.set_default("delay_auth_decision", False, group=group)
    conf.set_default("http_connect_timeout", settings.keystone_timeout_s, group=group)
    conf.set_default("http_request_max_retries", 0, group=group)
    conf.set_default("token_cache_time", settings.keystone_cache_s, group=group)
    return conf


def _middleware_conf(settings: Settings) -> dict[str, Any]:
    path = settings.keystone_authtoken_file
    if path is not None:
        if not path.is_file():
            raise InvalidInputError(f"SHAREMIG_KEYSTONE_AUTHTOKEN_FILE {path} does not exist")
        # The file's values win; the timeout and retry bounds apply where it sets none.
        return {"oslo_config_config": _bounded_conf([str(path)], settings)}
    if not settings.keystone_url or not settings.keystone_password:
        raise InvalidInputError(
            "SHAREMIG_AUTH=keystone needs SHAREMIG_KEYSTONE_URL (e.g. http://127.0.0.1:5000/v3) "
            "and SHAREMIG_KEYSTONE_PASSWORD (the service user's), or "
            "SHAREMIG_KEYSTONE_AUTHTOKEN_FILE naming a file with a [keystone_authtoken] section"
        )
    return {
        "oslo_config_config": _bounded_conf([], settings),
        "www_authenticate_uri": settings.keystone_url,
        "interface": "public",
        "auth_type": "password",
        "auth_url": settings.keystone_url,
        "username": settings.keystone_username,
        "password": settings.keystone_password,
        "project_name": settings.keystone_project,
        "user_domain_name": settings.keystone_user_domain,
        "project_domain_name": settings.keystone_project_domain,
    }


def check_keystone_settings(settings: Settings) -> str:
    """What `up` checks before starting: the settings are complete; returns Keystone's URL."""
    conf = _middleware_conf(settings)
    if "auth_url" in conf:
        return str(conf["auth_url"])
    oslo = conf["oslo_config_config"]
    url = oslo.keystone_authtoken.www_authenticate_uri
    return f"{url or 'the Keystone'} of {settings.keystone_authtoken_file}"


class KeystoneTokens:
    """`lookup(token)` for the pipeline: who a Keystone token speaks for, or None (401)."""

    blocking = True
    hint = (
        "Get a project-scoped token from Keystone (e.g. `openstack token issue` with "
        "OS_PROJECT_NAME set) and send it as X-Auth-Token."
    )

    def __init__(self, settings: Settings) -> None:
        self.www_authenticate = f'Keystone uri="{settings.keystone_url or ""}"'
        self.timeout_s = settings.keystone_timeout_s
        self._protocol = auth_token.AuthProtocol(_report_identity, _middleware_conf(settings))

    def __call__(self, token: str | None) -> TokenInfo | None:
        if not token:
            return None
        req = webob.Request.blank("/", headers={"X-Auth-Token": token})
        unavailable = KeystoneUnavailableError(
            "Keystone could not check the token: it did not answer within "
            f"{self.timeout_s} s (SHAREMIG_KEYSTONE_TIMEOUT_S) or refused the connection."
        )
        try:
            resp = req.get_response(self._protocol)
        except (ksa.ConnectionError, ksa.RequestTimeout, ksa.DiscoveryFailure) as exc:
            # auth_token turns these into a 503 only around the token check itself; the
            # service user's own authentication lets them through.
            raise unavailable from exc
        if resp.status_int == 503:
            raise unavailable
        if resp.status_int != 200:
            return None
        identity = resp.json
        if identity.get("status") != "Confirmed" or not identity.get("project_id"):
            return None  # unscoped (or domain-scoped) tokens name no project to act in
        return TokenInfo(
            project_id=str(identity["project_id"]),
            roles=tuple(str(r) for r in identity["roles"]),
            user_id=identity.get("user_id"),
        )

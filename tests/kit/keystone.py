"""A real Keystone for tests: keystone from PyPI in a venv of its own, under uWSGI, on SQLite.

The venv is made once per machine (`$SHAREMIG_KEYSTONE_VENV`, default
`~/.cache/sharemig/ks-venv`) so Keystone's oslo pins never meet the project's. When it cannot
be made (no network, no index), `keystone_venv()` says why and the caller skips.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

KEYSTONE_PACKAGES = ("keystone==30.0.0", "uwsgi==2.0.31", "python-openstackclient==10.5.0")
BIN = Path(sys.executable).parent
USERS = {
    # name: (project, roles); each user's password is "<name>-pass"
    "carol": ("demo", ["admin"]),
    "alice": ("demo", ["member"]),
    "bob": ("other", ["member"]),
}
ADMIN_PASSWORD = "adminpass"
SERVICE_PASSWORD = "servicepass"


class KeystoneUnavailable(Exception):
    """Keystone cannot run here; the message says why (tests skip with it)."""


def venv_dir() -> Path:
    default = Path.home() / ".cache" / "sharemig" / "ks-venv"
    return Path(os.environ.get("SHAREMIG_KEYSTONE_VENV", default))


def keystone_venv() -> Path:
    """The Keystone venv, created on first use (about a minute); KeystoneUnavailable if not."""
    venv = venv_dir()
    ready = venv / ".sharemig-ready"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions build it once
        if ready.exists():
            return venv
        log = venv.parent / f"{venv.name}.log"
        with open(log, "w") as out:
            steps = [
                [sys.executable, "-m", "venv", "--clear", str(venv)],
                [str(venv / "bin" / "pip"), "install", "-q", *KEYSTONE_PACKAGES],
            ]
            for cmd in steps:
                if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode:
                    raise KeystoneUnavailable(
                        f"cannot create the Keystone venv {venv} ({' '.join(cmd[:3])} failed; "
                        f"see {log}); set SHAREMIG_KEYSTONE_VENV to a venv with "
                        + " ".join(KEYSTONE_PACKAGES)
                    )
        ready.write_text(" ".join(KEYSTONE_PACKAGES) + "\n")
        return venv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Keystone:
    """One Keystone with an admin (project `admin`) and a service user `sharemig`."""

    venv: Path
    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "keystone.conf"

    def manage(self, *args: str) -> None:
        cmd = [str(self.venv / "bin" / "keystone-manage"), "--config-file", str(self.conf), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise KeystoneUnavailable(f"{' '.join(args[:1])} failed: {done.stderr[-2000:]}")

    def set_up(self) -> None:
        r = self.root
        for d in ("etc", "logs", "fernet-keys", "credential-keys"):
            (r / d).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"[DEFAULT]\nlog_file = {r}/logs/keystone.log\n"
            f"[database]\nconnection = sqlite:///{r}/keystone.db\n"
            # Cheap password hashes: a test Keystone checks many passwords on a loaded machine.
            "[identity]\npassword_hash_rounds = 4\n"
            "[token]\nprovider = fernet\nexpiration = 14400\n"
            f"[fernet_tokens]\nkey_repository = {r}/fernet-keys/\n"
            f"[fernet_receipts]\nkey_repository = {r}/fernet-keys/\n"
            f"[credential]\nkey_repository = {r}/credential-keys/\n"
        )
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        self.manage("db_sync")
        self.manage("fernet_setup", "--keystone-user", user, "--keystone-group", group)
        self.manage("credential_setup", "--keystone-user", user, "--keystone-group", group)
        self.manage(
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PASSWORD,
            "--bootstrap-username",
            "admin",
            "--bootstrap-project-name",
            "admin",
            "--bootstrap-role-name",
            "admin",
            "--bootstrap-service-name",
            "keystone",
            "--bootstrap-region-id",
            "RegionOne",
            "--bootstrap-public-url",
            self.url,
        )

    def start(self) -> None:
        env = dict(os.environ, OS_KEYSTONE_CONFIG_FILES=str(self.conf))
        env.pop("PYTHONPATH", None)
        uwsgi = [
            str(self.venv / "bin" / "uwsgi"),
            "--http-socket",
            f"127.0.0.1:{self.port}",
            "--module",
            "keystone.wsgi.api:application",
            "--virtualenv",
            str(self.venv),
            "--processes",
            "1",
            # One request at a time: two concurrent writes to Keystone's SQLite database can
            # deadlock on the lock upgrade, and SQLite answers the loser "database is locked"
            # at once, whatever the busy timeout (Keystone then answers 500).
            "--threads",
            "1",
            "--master",
            "--lazy-apps",
            "--die-on-term",
            # uWSGI's http-socket does not keep connections alive; without this header
            # keystoneauth reuses a closed connection and gets "connection reset".
            "--add-header",
            "Connection: close",
        ]
        log = open(self.root / "logs" / "uwsgi.log", "ab")  # noqa: SIM115 (lives with the proc)
        self.proc = subprocess.Popen(uwsgi, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180  # a loaded 2-CPU machine needs ~40 s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise KeystoneUnavailable(f"uwsgi exited; see {self.root}/logs/uwsgi.log")
            try:
                if httpx.get(self.url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise KeystoneUnavailable(f"Keystone did not answer on {self.url} within 180 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def admin_session(self) -> object:
        return password_session(self.url, "admin", ADMIN_PASSWORD, "admin")


def password_session(url: str, user: str, password: str, project: str | None) -> object:
    """A keystoneauth1 session for a password user (project-scoped unless `project` is None)."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    scope = {"project_name": project, "project_domain_name": "Default"} if project else {}
    auth = v3.Password(
        auth_url=url,
        username=user,
        password=password,
        user_domain_name="Default",
        **scope,
    )
    return session.Session(auth=auth, timeout=30)


def start_keystone(root: Path) -> Keystone:
    """Set up and start a Keystone in `root` with the service user the shim needs."""
    ks = Keystone(keystone_venv(), root, _free_port())
    ks.set_up()
    ks.start()
    from keystoneclient.v3 import client

    admin = client.Client(session=ks.admin_session())
    service = admin.projects.create("service", "default")
    user = admin.users.create("sharemig", domain="default", password=SERVICE_PASSWORD)
    role = next(r for r in admin.roles.list() if r.name == "service")
    admin.roles.grant(role, user=user, project=service)
    return ks


def add_user(ks: Keystone, name: str, project: str, roles: list[str]) -> None:
    """A user `name` (password `name`-pass) with `roles` on `project` (created if missing)."""
    from keystoneclient.v3 import client

    admin = client.Client(session=ks.admin_session())
    found = [p for p in admin.projects.list() if p.name == project]
    proj = found[0] if found else admin.projects.create(project, "default")
    user = admin.users.create(name, domain="default", password=f"{name}-pass")
    by_name = {r.name: r for r in admin.roles.list()}
    for role in roles:
        admin.roles.grant(by_name[role], user=user, project=proj)


def project_id(ks: Keystone, project: str) -> str:
    from keystoneclient.v3 import client

    admin = client.Client(session=ks.admin_session())
    return str(next(p.id for p in admin.projects.list() if p.name == project))


@dataclass
class KeystoneShim:
    """A shim in Keystone mode and the Keystone it trusts."""

    url: str
    keystone: Keystone
    proc: subprocess.Popen[bytes]
    log_path: Path
    project_ids: dict[str, str] = field(default_factory=dict)

    def session(self, user: str, project: str | None = "from-user") -> object:
        scope = USERS[user][0] if project == "from-user" else project
        return password_session(self.keystone.url, user, f"{user}-pass", scope)

    def project(self, name: str) -> str:
        """The Keystone project's id (remembered: tests ask for it while Keystone is down)."""
        if name not in self.project_ids:
            self.project_ids[name] = project_id(self.keystone, name)
        return self.project_ids[name]

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

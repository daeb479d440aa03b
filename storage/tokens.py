"""API tokens without Keystone: a YAML file mapping token digests to a project and roles.

Only SHA-256 digests are stored, so the file leaks no usable token; lookups compare every
digest with `hmac.compare_digest`, so timing does not reveal a partial match. Tokens are
never logged. The file is re-read when it changes, so `sharemig token create` works while
the API runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml

from storage.errors import InvalidInputError
from storage.models.base import utcnow
from storage.settings import get_settings

ADMIN_ROLE = "admin"
MEMBER_ROLE = "member"
PROJECT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class TokenInfo:
    """Who a token speaks for."""

    project_id: str
    roles: tuple[str, ...]
    user_id: str | None = None
    """Keystone's user id; tokens-file tokens carry none."""

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _read_entries(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"cannot read tokens file {path}: {exc}") from None
    entries = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InvalidInputError(f"tokens file {path} must hold a 'tokens:' list")
    return [e for e in entries if isinstance(e, dict)]


class TokenStore:
    """Token lookups against one tokens file, cached until the file's mtime or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: list[tuple[str, TokenInfo]] = []

    def _load(self) -> list[tuple[str, TokenInfo]]:
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp or stamp is None:
                entries = []
                for e in _read_entries(self.path):
                    roles = e.get("roles") or []
                    entries.append(
                        (
                            str(e.get("sha256", "")),
                            TokenInfo(
                                str(e.get("project_id", "")),
                                tuple(str(r) for r in roles) if isinstance(roles, list) else (),
                            ),
                        )
                    )
                self._entries, self._stamp = entries, stamp
            return self._entries

    def lookup(self, token: str | None) -> TokenInfo | None:
        """The token's project and roles, or None for a missing or unknown token."""
        if not token:
            return None
        presented = _digest(token)
        found: TokenInfo | None = None
        for digest, info in self._load():
            # No early exit: every entry costs the same whether or not it matches.
            if hmac.compare_digest(presented, digest):
                found = info
        return found


_stores: dict[Path, TokenStore] = {}
_stores_lock = threading.Lock()


def token_store(path: Path | None = None) -> TokenStore:
    """The process's store for `path` (default: the settings' tokens file)."""
    path = path or get_settings().tokens_path
    with _stores_lock:
        store = _stores.get(path)
        if store is None:
            store = _stores[path] = TokenStore(path)
        return store


def lookup_token(token: str | None, path: Path | None = None) -> TokenInfo | None:
    return token_store(path).lookup(token)


def create_token(
    project_id: str, *, admin: bool = False, path: Path | None = None, note: str | None = None
) -> str:
    """Make a new token for `project_id` (role `member`, plus `admin` if asked); returns it.

    The token itself is shown once, here; the file keeps only its digest.
    """
    if not PROJECT_ID_RE.match(project_id):
        raise InvalidInputError(
            f"project id {project_id!r} must be 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    path = path or get_settings().tokens_path
    # Hex, not URL-safe base64: one in 64 of those starts with '-', which a command line
    # (`openstack --os-token -x...`, `curl -H`) takes for an option.
    token = secrets.token_hex(32)
    roles = [MEMBER_ROLE, ADMIN_ROLE] if admin else [MEMBER_ROLE]
    entry: dict[str, object] = {
        "sha256": _digest(token),
        "project_id": project_id,
        "roles": roles,
        "created_at": utcnow().isoformat(),
    }
    if note:
        entry["note"] = note
    path.parent.mkdir(parents=True, exist_ok=True)
    # The lock file serialises writers in other processes (two `token create` at once).
    with _stores_lock, open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = _read_entries(path)
        entries.append(entry)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(
                "# sharemig API tokens: SHA-256 digests only; create with `sharemig token create`\n"
            )
            yaml.safe_dump({"tokens": entries}, fh, sort_keys=False)
        os.replace(tmp, path)
    return token

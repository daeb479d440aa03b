"""Runtime settings from the environment (`SHAREMIG_*`), loaded on first use, never at import."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "sharemig"


class Settings(BaseSettings):
    """Everything configurable. Paths default to files under `home`."""

    model_config = SettingsConfigDict(env_prefix="SHAREMIG_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    database_url: str | None = None
    pools_file: Path | None = None
    tokens_file: Path | None = None

    api_host: str = "127.0.0.1"
    api_port: int = 8786
    prefect_port: int = 4200
    work_pool: str = "sharemig"

    copy_workers: int = 4
    batch_max_files: int = 2048
    batch_max_bytes: int = 1 << 30
    verify_attempts: int = 3
    bandwidth_limit_bytes: int | None = None
    dask_address: str | None = None
    """A Dask distributed scheduler (`tcp://host:8786`): copy batches run on its workers
    instead of this host's process pool (see `storage.mover.dask_executor`)."""
    dask_connect_timeout_s: float = Field(default=10.0, gt=0)
    """How long a copy (or `sharemig up`) waits for the Dask scheduler to answer."""
    walk_limit_entries: int | None = None
    """At most this many source entries per second are walked while planning: caps the
    metadata load (stat, readdir) a migration puts on a filer that clients are still using."""

    retain_source_s: float = Field(default=0, ge=0)
    """The rollback window: a successful switchover keeps the old instance this many seconds
    for `sharemig rollback` (0: delete it at once)."""

    switchover_attempts: int = 3
    switchover_window_s: int = 600
    lease_ttl_s: float = 30.0
    """A working flow run renews its migration's lease every third of this; recovery (on any
    host) calls a run that Prefect still shows running dead only once it has expired."""
    """A failed switchover is tried again up to `switchover_attempts` times within this many
    seconds; then the migration goes back to waiting for approval, source intact."""

    prefect_timeout_s: float = Field(default=10.0, gt=0)
    """An API request waits at most this long in total for the Prefect API (retries of an
    overloaded server included); then it gets a 503 with Retry-After and nothing half-done."""

    manifest_retention_s: int = Field(default=30 * 24 * 3600, ge=0)
    """How long the manifest (copy job and one row per source entry) of a migration that
    ended is kept for reports; `up`'s recovery pass deletes it after that."""

    approval_timeout_s: int = 7 * 24 * 3600
    approval_timeout_action: str = "keep_waiting"
    """What happens when nobody approves in time: `keep_waiting` (re-arm the wait) or `cancel`."""

    auth: Literal["tokens", "keystone"] = "tokens"
    """`tokens`: the tokens file (`sharemig token create`); `keystone`: tokens are validated by
    keystonemiddleware's auth_token against `keystone_url` (or `keystone_authtoken_file`)."""
    keystone_url: str | None = None
    """Keystone's v3 URL, e.g. http://127.0.0.1:5000/v3 (auth_url and www_authenticate_uri)."""
    keystone_username: str = "sharemig"
    keystone_password: str | None = None
    keystone_project: str = "service"
    keystone_user_domain: str = "Default"
    keystone_project_domain: str = "Default"
    keystone_authtoken_file: Path | None = None
    """An oslo.config file with a `[keystone_authtoken]` section, used instead of the
    `keystone_*` settings above (as every OpenStack service's own config file has)."""
    keystone_timeout_s: int = Field(default=5, ge=1)
    """How long one call to Keystone may take; it is tried once (no reconnect retries), so a
    request waits at most about this long for Keystone before it gets a 503."""
    keystone_cache_s: int = Field(default=300, ge=-1)
    """Validated tokens are cached this many seconds (auth_token's `token_cache_time`; -1:
    no cache): a revoked token keeps working until its cache entry expires."""
    policy_file: Path | None = None
    """An oslo.policy `policy.yaml` overriding Manila's default rules (default:
    `home/policy.yaml` when it exists)."""

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'sharemig.db'}"

    @property
    def pools_path(self) -> Path:
        return self.pools_file or self.home / "pools.yaml"

    @property
    def tokens_path(self) -> Path:
        return self.tokens_file or self.home / "tokens.yaml"

    @property
    def policy_path(self) -> Path | None:
        if self.policy_file is not None:
            return self.policy_file
        default = self.home / "policy.yaml"
        return default if default.exists() else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings so the next `get_settings()` re-reads the environment."""
    get_settings.cache_clear()

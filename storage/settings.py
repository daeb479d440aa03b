"""Runtime settings from the environment (`SHAREMIG_*`), loaded on first use, never at import."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

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

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'sharemig.db'}"

    @property
    def pools_path(self) -> Path:
        return self.pools_file or self.home / "pools.yaml"

    @property
    def tokens_path(self) -> Path:
        return self.tokens_file or self.home / "tokens.yaml"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings so the next `get_settings()` re-reads the environment."""
    get_settings.cache_clear()

"""`SHAREMIG_HOME/endpoints.json`: where a running `sharemig up` listens, for scripts and the CLI.

`up` writes it once every part is healthy and removes it when it stops; `demo` and the
operator commands read it to find the API shim and the Prefect server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from storage.errors import NotFoundError

FILE_NAME = "endpoints.json"


class Endpoints(BaseModel):
    """What a client of a running `sharemig up` needs (tokens included: the file is 0600)."""

    api_url: str
    """The API shim's base URL; the Manila endpoint is `{api_url}/v2/{project_id}`."""
    prefect_url: str
    """The Prefect UI."""
    prefect_api_url: str
    project_id: str
    admin_token: str
    member_token: str
    home: str
    pid: int
    """The `sharemig up` process."""
    database_url: str | None = None
    """sharemig's database when not the default SQLite file in `home`."""

    @property
    def manila_endpoint(self) -> str:
        return f"{self.api_url}/v2/{self.project_id}"

    def flow_run_url(self, flow_run_id: str) -> str:
        # The V1 run page: a deep link that opens without the V2 redirect, with a Resume button.
        return f"{self.prefect_url}/runs/flow-run/{flow_run_id}"


def endpoints_path(home: Path) -> Path:
    return home / FILE_NAME


def write_endpoints(endpoints: Endpoints, home: Path) -> Path:
    """Write atomically with mode 0600 (it holds tokens)."""
    path = endpoints_path(home)
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(endpoints.model_dump(), fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def read_endpoints(home: Path) -> Endpoints:
    """The endpoints of the `sharemig up` running on `home`; NotFoundError says how to start one."""
    path = endpoints_path(home)
    try:
        return Endpoints.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(
            f"no `sharemig up` is running on {home} ({path} is missing); start one with "
            "`sharemig up` (same SHAREMIG_HOME or --home) in another terminal"
        ) from None
    except (OSError, ValidationError) as exc:
        raise NotFoundError(f"cannot read {path}: {exc}") from None


def remove_endpoints(home: Path, pid: int) -> None:
    """Remove the file if it is still the one process `pid` wrote."""
    try:
        if read_endpoints(home).pid == pid:
            endpoints_path(home).unlink()
    except (NotFoundError, FileNotFoundError):
        pass


def prefect_api_url(home: Path) -> str | None:
    """The Prefect API of the `sharemig up` on `home`, if one wrote its endpoints."""
    try:
        return read_endpoints(home).prefect_api_url
    except NotFoundError:
        return None

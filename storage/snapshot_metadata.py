"""Snapshot metadata (Manila 2.73+): free key/value strings, checked as Manila checks them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from storage.errors import InvalidInputError, NotFoundError
from storage.shares import get_snapshot


def check_metadata(metadata: object) -> dict[str, str]:
    """Keys of 1-255 characters, values of 1-1023; both strings."""
    if not isinstance(metadata, dict):
        raise InvalidInputError('metadata must be an object of strings, e.g. {"purpose": "qa"}')
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError("Metadata property key is blank.")
        if len(key) > 255:
            raise InvalidInputError(
                f"Metadata property key {key[:20]!r}... is over 255 characters."
            )
        if not isinstance(value, str) or not value:
            raise InvalidInputError(f"Metadata property value of {key!r} is blank or not a string.")
        if len(value) > 1023:
            raise InvalidInputError(f"Metadata property value of {key!r} is over 1023 characters.")
    return {str(k): str(v) for k, v in metadata.items()}


def get_metadata(session: Session, snapshot_id: str, project_id: str | None) -> dict[str, str]:
    return dict(get_snapshot(session, snapshot_id, project_id).metadata_)


def set_metadata(
    session: Session,
    snapshot_id: str,
    metadata: object,
    project_id: str | None,
    *,
    replace: bool,
) -> dict[str, str]:
    """Merge (POST) or replace (PUT) the snapshot's metadata; returns all of it."""
    snap = get_snapshot(session, snapshot_id, project_id)
    new = check_metadata(metadata)
    snap.metadata_ = new if replace else {**snap.metadata_, **new}
    session.flush()
    return dict(snap.metadata_)


def delete_item(session: Session, snapshot_id: str, key: str, project_id: str | None) -> None:
    snap = get_snapshot(session, snapshot_id, project_id)
    if key not in snap.metadata_:
        raise NotFoundError(f"Metadata item {key} was not found for snapshot {snapshot_id}.")
    snap.metadata_ = {k: v for k, v in snap.metadata_.items() if k != key}
    session.flush()

"""Share types and share networks."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.errors import InvalidInputError, NotFoundError
from storage.models import ShareNetwork, ShareType

DEFAULT_TYPE_NAME = "default"
DEFAULT_EXTRA_SPECS: dict[str, object] = {
    "driver_handles_share_servers": "False",
    "snapshot_support": "True",
}


def ensure_default_share_type(session: Session) -> ShareType:
    """The default type (created on first use): no share servers, snapshots supported."""
    found = session.scalar(select(ShareType).where(ShareType.is_default.is_(True)))
    if found is not None:
        return found
    found = session.scalar(select(ShareType).where(ShareType.name == DEFAULT_TYPE_NAME))
    if found is None:
        found = ShareType(name=DEFAULT_TYPE_NAME, extra_specs=dict(DEFAULT_EXTRA_SPECS))
        session.add(found)
    found.is_default = True
    session.flush()
    return found


def create_share_type(
    session: Session, name: str, extra_specs: dict[str, object], *, is_public: bool = True
) -> ShareType:
    if session.scalar(select(ShareType).where(ShareType.name == name)) is not None:
        raise InvalidInputError(f"share type {name!r} already exists")
    st = ShareType(name=name, extra_specs=dict(extra_specs), is_public=is_public)
    session.add(st)
    session.flush()
    return st


def get_share_type(session: Session, type_id_or_name: str) -> ShareType:
    st = session.get(ShareType, type_id_or_name) or session.scalar(
        select(ShareType).where(ShareType.name == type_id_or_name)
    )
    if st is None:
        raise NotFoundError(f"share type {type_id_or_name} could not be found")
    return st


def list_share_types(session: Session) -> list[ShareType]:
    ensure_default_share_type(session)
    return list(session.scalars(select(ShareType).order_by(ShareType.name)))


def create_share_network(
    session: Session, project_id: str, name: str | None = None, description: str | None = None
) -> ShareNetwork:
    net = ShareNetwork(project_id=project_id, name=name, description=description)
    session.add(net)
    session.flush()
    return net


def get_share_network(
    session: Session, network_id: str, project_id: str | None = None
) -> ShareNetwork:
    net = session.get(ShareNetwork, network_id)
    if net is None or (project_id is not None and net.project_id != project_id):
        raise NotFoundError(f"share network {network_id} could not be found")
    return net


def list_share_networks(session: Session, project_id: str | None) -> list[ShareNetwork]:
    q = select(ShareNetwork).order_by(ShareNetwork.created_at)
    if project_id is not None:
        q = q.where(ShareNetwork.project_id == project_id)
    return list(session.scalars(q))

"""Share types and share networks."""

from __future__ import annotations

from sqlalchemy import ColumnElement, delete, exists, or_, select
from sqlalchemy.orm import Session

from storage.errors import ConflictError, InvalidStateError, NotFoundError
from storage.models import Share, ShareInstance, ShareNetwork, ShareType, ShareTypeProject

DEFAULT_TYPE_NAME = "default"
DEFAULT_EXTRA_SPECS: dict[str, object] = {
    "driver_handles_share_servers": "False",
    "snapshot_support": "True",
    "create_share_from_snapshot_support": "True",
}
ALL = "all"
"""`is_public=all` in a type listing: public and private types alike (admins only)."""


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
    session: Session,
    name: str,
    extra_specs: dict[str, object],
    *,
    is_public: bool = True,
    description: str | None = None,
) -> ShareType:
    if session.scalar(select(ShareType).where(ShareType.name == name)) is not None:
        raise ConflictError(f"Share Type {name} already exists.")
    st = ShareType(
        name=name, extra_specs=dict(extra_specs), is_public=is_public, description=description
    )
    session.add(st)
    session.flush()
    return st


def _accessible(project_id: str) -> ColumnElement[bool]:
    """Public, or private with `project_id` on its access list (Manila's type visibility)."""
    granted = exists().where(
        ShareTypeProject.share_type_id == ShareType.id, ShareTypeProject.project_id == project_id
    )
    return or_(ShareType.is_public.is_(True), granted)


def get_share_type(
    session: Session, type_id_or_name: str, *, project_id: str | None = None
) -> ShareType:
    """By id or name; with `project_id`, a private type without access is not found."""
    q = select(ShareType).where(
        or_(ShareType.id == type_id_or_name, ShareType.name == type_id_or_name)
    )
    if project_id is not None:
        q = q.where(_accessible(project_id))
    st = session.scalars(q.order_by(ShareType.id != type_id_or_name)).first()
    if st is None:
        raise NotFoundError(f"Share type {type_id_or_name} could not be found.")
    return st


def list_share_types(
    session: Session, project_id: str, *, is_public: bool | str | None = True, admin: bool = False
) -> list[ShareType]:
    """Manila's listing: public types and the private ones `project_id` may use; an admin may
    ask for only the private ones (`is_public=False`) or every type (`ALL`)."""
    ensure_default_share_type(session)
    q = select(ShareType).order_by(ShareType.name)
    if not admin or is_public is True or is_public is None:
        q = q.where(_accessible(project_id))
    elif is_public is False:
        q = q.where(ShareType.is_public.is_(False))
    return list(session.scalars(q))


def update_share_type(
    session: Session,
    type_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    is_public: bool | None = None,
) -> ShareType:
    st = get_share_type(session, type_id)
    if name is not None and name != st.name:
        if session.scalar(select(ShareType.id).where(ShareType.name == name)) is not None:
            raise ConflictError(f"Share Type {name} already exists.")
        st.name = name
    if description is not None:
        st.description = description or None  # "" unsets it, as in Manila
    if is_public is not None:
        st.is_public = is_public
    session.flush()
    return st


def set_extra_specs(session: Session, type_id: str, specs: dict[str, str]) -> ShareType:
    """Add or replace these extra specs (Manila's update_or_create); the rest stay."""
    st = get_share_type(session, type_id)
    st.extra_specs = {**st.extra_specs, **specs}  # a new dict: JSON columns track assignment
    session.flush()
    return st


def unset_extra_spec(session: Session, type_id: str, key: str) -> None:
    st = get_share_type(session, type_id)
    if key not in st.extra_specs:
        raise NotFoundError(f"Share Type {st.id} has no extra specs with key {key}.")
    st.extra_specs = {k: v for k, v in st.extra_specs.items() if k != key}
    session.flush()


def delete_share_type(session: Session, type_id: str) -> None:
    """Refused while any share (or a migration's destination copy) still uses the type."""
    st = get_share_type(session, type_id)
    in_use = session.scalar(
        select(Share.id).where(Share.share_type_id == st.id).limit(1)
    ) or session.scalar(
        select(ShareInstance.id).where(ShareInstance.share_type_id == st.id).limit(1)
    )
    if in_use:
        raise InvalidStateError(
            f"Target share type is still in use: share type {st.name} ({st.id}) is used by "
            f"share {in_use}. Delete or retype its shares first."
        )
    session.execute(delete(ShareTypeProject).where(ShareTypeProject.share_type_id == st.id))
    session.delete(st)
    session.flush()


def _private_type(session: Session, type_id: str) -> ShareType:
    st = get_share_type(session, type_id)
    if st.is_public:
        raise ConflictError(
            f"Type access modification is not applicable to public share type {st.name}."
        )
    return st


def type_access(session: Session, type_id: str) -> list[str]:
    """Projects on a private type's access list; a public type has none to show (404)."""
    st = get_share_type(session, type_id)
    if st.is_public:
        raise NotFoundError("Access list not available for public share types.")
    return list(
        session.scalars(
            select(ShareTypeProject.project_id)
            .where(ShareTypeProject.share_type_id == st.id)
            .order_by(ShareTypeProject.created_at, ShareTypeProject.project_id)
        )
    )


def add_type_access(session: Session, type_id: str, project_id: str) -> None:
    st = _private_type(session, type_id)
    if session.get(ShareTypeProject, (st.id, project_id)) is not None:
        raise ConflictError(
            f"Share type access for project {project_id} and share type {st.id} exists already."
        )
    session.add(ShareTypeProject(share_type_id=st.id, project_id=project_id))
    session.flush()


def remove_type_access(session: Session, type_id: str, project_id: str) -> None:
    st = _private_type(session, type_id)
    row = session.get(ShareTypeProject, (st.id, project_id))
    if row is None:
        raise NotFoundError(
            f"Share type access not found for project {project_id} and share type {st.id}."
        )
    session.delete(row)
    session.flush()


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

"""Response bodies as Manila builds them, field by field per microversion (contract §12)."""

from __future__ import annotations

from datetime import datetime

from api_shim.context import RequestContext
from storage.drivers.registry import driver_class
from storage.models import (
    AccessRule,
    ExportLocation,
    Pool,
    Share,
    ShareNetwork,
    ShareType,
    Snapshot,
)


def timestamp(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value else None


def _links(ctx: RequestContext, collection: str, item_id: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": ctx.href(collection, item_id)},
        {"rel": "bookmark", "href": ctx.href(collection, item_id, bookmark=True)},
    ]


def share_summary(ctx: RequestContext, share: Share) -> dict[str, object]:
    return {"id": share.id, "name": share.name, "links": _links(ctx, "shares", share.id)}


def share_detail(
    ctx: RequestContext,
    share: Share,
    share_type: ShareType,
    exports: list[ExportLocation] | None = None,
) -> dict[str, object]:
    """One share; `exports` is only needed below 2.9, where locations were embedded."""
    view: dict[str, object] = {
        "id": share.id,
        "size": share.size,
        "availability_zone": share.availability_zone,
        "created_at": timestamp(share.created_at),
        "status": share.status,
        "name": share.name,
        "description": share.description,
        "project_id": share.project_id,
        "snapshot_id": share.snapshot_id,
        "share_network_id": share.share_network_id,
        "share_proto": share.share_proto,
        "share_type": share_type.name,
        "volume_type": share_type.name,
        "metadata": dict(share.metadata_),
        "is_public": share.is_public,
        "links": _links(ctx, "shares", share.id),
    }
    if ctx.is_admin:
        view["host"] = share.host
        view["share_server_id"] = None
    if not ctx.at_least("2.9"):
        paths = [e.path for e in exports or []]
        view["export_location"] = paths[0] if paths else None
        view["export_locations"] = paths
    if ctx.at_least("2.2"):
        view["snapshot_support"] = share_type.spec_bool("snapshot_support")
    if ctx.at_least("2.4") and not ctx.at_least("2.31"):
        view["consistency_group_id"] = None
        view["source_cgsnapshot_member_id"] = None
    if ctx.at_least("2.5"):
        view["task_state"] = share.task_state
    if ctx.at_least("2.6"):
        view["share_type"] = share_type.id
        view["share_type_name"] = share_type.name
    if ctx.at_least("2.10"):
        view["access_rules_status"] = "active"
    if ctx.at_least("2.11"):
        view["replication_type"] = None
        view["has_replicas"] = False
    if ctx.at_least("2.16"):
        view["user_id"] = share.user_id
    if ctx.at_least("2.24"):
        view["create_share_from_snapshot_support"] = share_type.spec_bool(
            "create_share_from_snapshot_support"
        )
    if ctx.at_least("2.27"):
        view["revert_to_snapshot_support"] = share_type.spec_bool("revert_to_snapshot_support")
    if ctx.at_least("2.31"):
        view["share_group_id"] = None
        view["source_share_group_snapshot_member_id"] = None
    if ctx.at_least("2.32"):
        view["mount_snapshot_support"] = share_type.spec_bool("mount_snapshot_support")
    if ctx.at_least("2.54"):
        view["progress"] = "100%" if share.status == "available" else None
    if ctx.at_least("2.69"):
        view["is_soft_deleted"] = False
        view["scheduled_to_be_deleted_at"] = None
    if ctx.at_least("2.80"):
        view["source_backup_id"] = None
    if ctx.at_least("2.90"):
        view["encryption_key_ref"] = None
    if ctx.at_least("2.99"):
        view["snapshot_inherit_share_access_support"] = False
    return view


def export_location(ctx: RequestContext, loc: ExportLocation) -> dict[str, object]:
    view: dict[str, object] = {"id": loc.id, "path": loc.path}
    if ctx.at_least("2.14"):
        view["preferred"] = loc.preferred
    if ctx.at_least("2.87"):
        view["metadata"] = dict(loc.metadata_)
    if ctx.is_admin:
        view["share_instance_id"] = loc.share_instance_id
        view["is_admin_only"] = loc.is_admin_only
        view["created_at"] = timestamp(loc.created_at)
        view["updated_at"] = timestamp(loc.updated_at)
    return view


def snapshot(ctx: RequestContext, snap: Snapshot, share: Share | None) -> dict[str, object]:
    view: dict[str, object] = {
        "id": snap.id,
        "share_id": snap.share_id,
        "share_size": share.size if share else snap.size,
        "created_at": timestamp(snap.created_at),
        "status": snap.status,
        "name": snap.name,
        "description": snap.description,
        "size": snap.size,
        "share_proto": share.share_proto if share else None,
        "links": _links(ctx, "snapshots", snap.id),
    }
    if ctx.at_least("2.17"):
        view["project_id"] = snap.project_id
        view["user_id"] = None
    if ctx.at_least("2.73"):
        view["metadata"] = dict(snap.metadata_)
    return view


# Manila's INFERRED_OPTIONAL_MAP: what a non-admin sees for optional specs a type leaves unset.
INFERRED_SPECS = {
    "snapshot_support": False,
    "create_share_from_snapshot_support": False,
    "revert_to_snapshot_support": False,
    "mount_snapshot_support": False,
}


def share_type(ctx: RequestContext, st: ShareType) -> dict[str, object]:
    """One type as Manila's view builder trims it; callers add the `volume_type` alias."""
    specs = {k: str(v) for k, v in st.extra_specs.items()}
    required = {"driver_handles_share_servers": specs.get("driver_handles_share_servers", "False")}
    visible = dict(specs) if ctx.is_admin else dict(required)
    if not ctx.is_admin:
        for key in INFERRED_SPECS:
            if key in specs:
                visible[key] = specs[key]
    view: dict[str, object] = {
        "id": st.id,
        "name": st.name,
        "extra_specs": visible,
        "required_extra_specs": required,
    }
    if ctx.at_least("2.7"):
        view["share_type_access:is_public"] = st.is_public
    else:
        view["os-share-type-access:is_public"] = st.is_public
    if ctx.at_least("2.24") and not ctx.is_admin:
        for key, default in INFERRED_SPECS.items():
            visible.setdefault(key, default)  # type: ignore[arg-type]
    if ctx.at_least("2.41"):
        view["description"] = st.description
    if ctx.at_least("2.46"):
        view["is_default"] = st.is_default
    return view


def share_type_access(st: ShareType, projects: list[str]) -> dict[str, object]:
    return {"share_type_access": [{"share_type_id": st.id, "project_id": p} for p in projects]}


def share_network(ctx: RequestContext, net: ShareNetwork) -> dict[str, object]:
    view: dict[str, object] = {
        "id": net.id,
        "name": net.name,
        "description": net.description,
        "project_id": net.project_id,
        "created_at": timestamp(net.created_at),
        "updated_at": None,
        "links": _links(ctx, "share-networks", net.id),
    }
    if ctx.at_least("2.51"):
        view["share_network_subnets"] = []
    else:
        view.update(
            neutron_net_id=None,
            neutron_subnet_id=None,
            network_type=None,
            segmentation_id=None,
            cidr=None,
            ip_version=None,
            gateway=None,
            mtu=None,
        )
    if ctx.at_least("2.63"):
        view["status"] = "active"
        view["security_service_update_support"] = False
    return view


def pool(p: Pool, allocated_gb: int, *, detail: bool) -> dict[str, object]:
    view: dict[str, object] = {
        "name": p.name,
        "host": p.host,
        "backend": p.backend,
        "pool": p.pool,
    }
    if detail:
        caps = driver_class(p.driver).capabilities
        view["capabilities"] = {
            "pool_name": p.pool,
            "share_backend_name": p.backend,
            "driver_name": p.driver,
            "vendor_name": "sharemig",
            "driver_version": "1.0",
            "storage_protocol": "NFS_CIFS",
            "total_capacity_gb": p.capacity_gb,
            "free_capacity_gb": p.capacity_gb - allocated_gb,
            "allocated_capacity_gb": allocated_gb,
            "reserved_percentage": 0,
            "driver_handles_share_servers": False,
            "snapshot_support": caps.snapshot_support,
            "create_share_from_snapshot_support": caps.create_share_from_snapshot_support,
            "revert_to_snapshot_support": caps.revert_to_snapshot_support,
            "mount_snapshot_support": False,
            "availability_zone": p.availability_zone,
            "enabled": p.enabled,
            "timestamp": timestamp(p.updated_at),
        }
    return view


def access_rule(ctx: RequestContext, rule: AccessRule, *, with_share: bool) -> dict[str, object]:
    view: dict[str, object] = {
        "id": rule.id,
        "access_type": rule.access_type,
        "access_to": rule.access_to,
        "access_level": rule.access_level,
        "state": rule.state,
    }
    if with_share:
        view["share_id"] = rule.share_id
    if ctx.at_least("2.21"):
        view["access_key"] = None
    if ctx.at_least("2.33"):
        view["created_at"] = timestamp(rule.created_at)
        view["updated_at"] = timestamp(rule.updated_at)
    if ctx.at_least("2.45"):
        view["metadata"] = {}
    return view

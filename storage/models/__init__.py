"""SQLAlchemy models: the durable truth for everything a client can ask."""

from storage.models.base import Base, new_id, utcnow
from storage.models.catalog import (
    Pool,
    PoolBandwidth,
    ShareNetwork,
    ShareType,
    ShareTypeProject,
)
from storage.models.maintenance import MaintenanceMove
from storage.models.manifest import CopyJob, ManifestEntry
from storage.models.migration import Migration
from storage.models.mover_rate import MoverRate
from storage.models.share import AccessRule, ExportLocation, Share, ShareInstance, Snapshot

__all__ = [
    "AccessRule",
    "Base",
    "CopyJob",
    "ExportLocation",
    "MaintenanceMove",
    "ManifestEntry",
    "Migration",
    "MoverRate",
    "Pool",
    "PoolBandwidth",
    "Share",
    "ShareInstance",
    "ShareNetwork",
    "ShareType",
    "ShareTypeProject",
    "Snapshot",
    "new_id",
    "utcnow",
]

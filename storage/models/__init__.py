"""SQLAlchemy models: the durable truth for everything a client can ask."""

from storage.models.base import Base, new_id, utcnow
from storage.models.catalog import Pool, ShareNetwork, ShareType
from storage.models.maintenance import MaintenanceMove
from storage.models.manifest import CopyJob, ManifestEntry
from storage.models.migration import Migration
from storage.models.share import AccessRule, ExportLocation, Share, ShareInstance, Snapshot

__all__ = [
    "AccessRule",
    "Base",
    "CopyJob",
    "ExportLocation",
    "MaintenanceMove",
    "ManifestEntry",
    "Migration",
    "Pool",
    "Share",
    "ShareInstance",
    "ShareNetwork",
    "ShareType",
    "Snapshot",
    "new_id",
    "utcnow",
]

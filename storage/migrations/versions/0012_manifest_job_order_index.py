"""manifest_entries (job_id, id): a job's entries in walk order without a sort

The report streams a job's manifest in walk order; without this index SQLite picked the
(job_id, batch, state) index and sorted every entry in a temporary B-tree first (75-88 s for
a million entries, and the sorter's memory in the report's RSS); with it, 10 s and no sort.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 19:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_manifest_entries_job_id_id", "manifest_entries", ["job_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_manifest_entries_job_id_id", table_name="manifest_entries")

"""private share types' project access lists, and snapshot metadata

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "share_type_projects",
        sa.Column("share_type_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["share_type_id"],
            ["share_types.id"],
            name=op.f("fk_share_type_projects_share_type_id_share_types"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("share_type_id", "project_id", name=op.f("pk_share_type_projects")),
    )
    with op.batch_alter_table("snapshots") as batch:
        batch.add_column(sa.Column("metadata", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("snapshots") as batch:
        batch.drop_column("metadata")
    op.drop_table("share_type_projects")

"""maintenance moves: the batch of a suspended evacuate/rebalance run

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "maintenance_moves",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("share_id", sa.String(length=36), nullable=False),
        sa.Column("source_pool", sa.String(length=255), nullable=False),
        sa.Column("dest_pool", sa.String(length=255), nullable=True),
        sa.Column("auto_approve", sa.Boolean(), nullable=False),
        sa.Column("migration_id", sa.String(length=36), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_moves")),
        sa.UniqueConstraint(
            "flow_run_id", "share_id", name=op.f("uq_maintenance_moves_flow_run_id")
        ),
    )
    op.create_index(
        op.f("ix_maintenance_moves_flow_run_id"), "maintenance_moves", ["flow_run_id"]
    )
    op.create_index(
        op.f("ix_maintenance_moves_migration_id"), "maintenance_moves", ["migration_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_maintenance_moves_migration_id"), table_name="maintenance_moves")
    op.drop_index(op.f("ix_maintenance_moves_flow_run_id"), table_name="maintenance_moves")
    op.drop_table("maintenance_moves")

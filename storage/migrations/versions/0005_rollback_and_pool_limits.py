"""rollback window and per-pool limits: retained source instances, reverse migrations,
per-pool concurrency and bandwidth budgets

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("share_instances") as batch:
        batch.add_column(sa.Column("retained_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("rollback_of", sa.String(length=36), nullable=True))
        batch.add_column(
            sa.Column("retain_source_s", sa.Float(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("pools") as batch:
        batch.add_column(sa.Column("max_concurrent_migrations", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("bandwidth_limit_bytes", sa.BigInteger(), nullable=True))
    op.create_table(
        "pool_bandwidth",
        sa.Column("pool_name", sa.String(length=255), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("stamp", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("pool_name", name=op.f("pk_pool_bandwidth")),
    )


def downgrade() -> None:
    op.drop_table("pool_bandwidth")
    with op.batch_alter_table("pools") as batch:
        batch.drop_column("bandwidth_limit_bytes")
        batch.drop_column("max_concurrent_migrations")
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("retain_source_s")
        batch.drop_column("rollback_of")
    with op.batch_alter_table("share_instances") as batch:
        batch.drop_column("retained_until")

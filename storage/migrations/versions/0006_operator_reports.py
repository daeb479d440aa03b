"""operator reports: what a copy could not keep or repaired, and measured mover rates

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("copy_jobs") as batch:
        batch.add_column(
            sa.Column("not_preserved", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("repaired", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(
            sa.Column("complete_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "mover_rates",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("files", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_mover_rates_hostname", "mover_rates", ["hostname"])


def downgrade() -> None:
    op.drop_index("ix_mover_rates_hostname", table_name="mover_rates")
    op.drop_table("mover_rates")
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("complete_requested_at")
    with op.batch_alter_table("copy_jobs") as batch:
        batch.drop_column("repaired")
        batch.drop_column("not_preserved")

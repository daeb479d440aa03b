"""share instance freeze record

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("share_instances") as batch:
        batch.add_column(sa.Column("frozen_at_ns", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("share_instances") as batch:
        batch.drop_column("frozen_at_ns")

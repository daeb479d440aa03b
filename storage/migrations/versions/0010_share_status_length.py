"""share status: 64 characters, for Manila's `shrinking_possible_data_loss_error` (33)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 18:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shares") as batch:
        batch.alter_column(
            "status", existing_type=sa.String(length=32), type_=sa.String(length=64)
        )


def downgrade() -> None:
    with op.batch_alter_table("shares") as batch:
        batch.alter_column(
            "status", existing_type=sa.String(length=64), type_=sa.String(length=32)
        )

"""The typology guess (family of the top reason) as a column, for the queue's filter.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("top_family", sa.String(32), nullable=True))
        batch.create_index("ix_cases_top_family", ["top_family"])


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_index("ix_cases_top_family")
        batch.drop_column("top_family")

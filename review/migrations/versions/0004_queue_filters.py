"""The queue's other filters and order: rise since the previous run, declared country,
sign-up time; an index covering the queue's sort; and each user's saved filters.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("rise", sa.Float, nullable=True))
        batch.add_column(sa.Column("country", sa.String(16), nullable=True))
        batch.add_column(sa.Column("signed_up_at", sa.DateTime, nullable=True))
        batch.create_index("ix_cases_country", ["country"])
        # the queue's sort keys under its status filter, read from the index alone
        batch.create_index("ix_cases_queue", ["status", "score", "rise", "id", "claimed_until"])
    op.create_table(
        "saved_filters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("query", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("owner", "name", name="uq_saved_filter_owner_name"),
    )


def downgrade() -> None:
    op.drop_table("saved_filters")
    with op.batch_alter_table("cases") as batch:
        batch.drop_index("ix_cases_queue")
        batch.drop_index("ix_cases_country")
        batch.drop_column("signed_up_at")
        batch.drop_column("country")
        batch.drop_column("rise")

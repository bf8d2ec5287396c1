"""Score history: each synced batch run's score of every case's account.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "score_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("as_of", sa.DateTime, nullable=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("band", sa.String(16), nullable=False),
        sa.UniqueConstraint("case_id", "run_id", name="uq_history_case_run"),
    )
    op.create_index("ix_score_history_case_id", "score_history", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_score_history_case_id", "score_history")
    op.drop_table("score_history")

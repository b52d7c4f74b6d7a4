"""Model schedules: daily windows in which a model runs (started when one opens, stopped when it closes).

Revision ID: 0016
Revises: 0015 (the lifecycle workflows)
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "model_schedules",
        sa.Column("model_id", sa.String(128), sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("days", JSONB, nullable=False),
        sa.Column("start", sa.String(5), nullable=False),
        sa.Column("end", sa.String(5), nullable=False),
        sa.Column("acted_through", TS),
        sa.Column("last_action", sa.String(16)),
        sa.Column("last_action_at", TS),
        sa.Column("last_reason", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("model_schedules")

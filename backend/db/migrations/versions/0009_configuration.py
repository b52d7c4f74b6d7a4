"""Configuration versions: feature toggles, the system banner and the default model, one row per admin write.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "configuration_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_by_token", sa.String(40)),
        sa.Column("features", JSONB, nullable=False, server_default="{}"),
        sa.Column("banner", JSONB, nullable=False, server_default="{}"),
        sa.Column("default_model_id", sa.String(128)),
        sa.Column("changes", JSONB, nullable=False, server_default="[]"),
        sa.Column("restored_from", sa.Integer),
    )


def downgrade() -> None:
    op.drop_table("configuration_versions")

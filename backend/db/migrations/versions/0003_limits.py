"""Limits per user, group and token, and the limiter's shared state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("subject", sa.String(256), primary_key=True),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("parallel", sa.Integer),
        sa.Column("budget_tokens", sa.BigInteger),
        sa.Column("budget_period", sa.String(8)),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "limit_hits",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
    )
    op.create_index("ix_limit_hits_key_at", "limit_hits", ["key", "at"])
    op.create_table(
        "limit_inflight",
        sa.Column("request_id", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("started_at", TS, nullable=False),
    )
    op.create_table(
        "limit_budget",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("period_start", TS, primary_key=True),
        sa.Column("used", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("limit_budget", "limit_inflight", "limit_hits", "rate_limits"):
        op.drop_table(table)

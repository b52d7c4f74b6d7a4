"""Foundation: model registry, API tokens, usage records.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("hosting", sa.String(16), nullable=False),
        sa.Column("provider_model", sa.String(512)),
        sa.Column("base_url", sa.String(2048)),
        sa.Column("upstream_model", sa.String(512)),
        sa.Column("api_key_encrypted", sa.Text),
        sa.Column("allowed_groups", JSONB, nullable=False, server_default="[]"),
        sa.Column("features", JSONB, nullable=False, server_default="[]"),
        sa.Column("streaming", sa.Boolean, nullable=False),
        sa.Column("context_window", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("managed_by", sa.String(32)),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("username", sa.String(256), nullable=False),
        sa.Column("groups", JSONB, nullable=False, server_default="[]"),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("is_bootstrap", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
    )
    op.create_index("ix_api_tokens_username", "api_tokens", ["username"])
    op.create_table(
        "usage_records",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("username", sa.String(256), nullable=False),
        sa.Column("token_id", sa.String(40)),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("estimated", sa.Boolean, nullable=False, server_default="false"),
    )
    op.create_index("ix_usage_created_at", "usage_records", ["created_at"])


def downgrade() -> None:
    op.drop_table("usage_records")
    op.drop_table("api_tokens")
    op.drop_table("models")

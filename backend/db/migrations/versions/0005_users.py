"""Users keyed on (issuer, subject), never on an editable claim; API tokens remember the token that created them.

Existing token owners become local users of the same name (their tokens keep working exactly as before). Names
that came from an OIDC provider's editable claim before this revision cannot be told apart from local names; an
OIDC user signing in afterwards gets a new identity derived from the issuer and ``sub``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(256), primary_key=True),
        sa.Column("issuer", sa.String(512), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("groups", JSONB, nullable=False, server_default="[]"),
        sa.Column("groups_confirmed_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("last_seen_at", TS, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("issuer", "subject", name="uq_users_issuer_subject"),
    )
    op.execute(
        "INSERT INTO users (id, issuer, subject, display_name) "
        "SELECT DISTINCT username, 'local', username, username FROM api_tokens ON CONFLICT DO NOTHING"
    )
    op.add_column("api_tokens", sa.Column("parent_id", sa.String(40)))
    op.create_index("ix_api_tokens_parent_id", "api_tokens", ["parent_id"])
    op.create_index("ix_api_tokens_created_at", "api_tokens", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_api_tokens_created_at", "api_tokens")
    op.drop_index("ix_api_tokens_parent_id", "api_tokens")
    op.drop_column("api_tokens", "parent_id")
    op.drop_table("users")

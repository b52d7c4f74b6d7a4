"""MCP servers: global (admins) and personal (one user's) registrations, secrets sealed.

Revision ID: 0012
Revises: 0008 (to be re-chained after the revisions merged before it)
Create Date: 2026-12-01
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The table as it is at this revision (frozen: later revisions change it with their own statements).
DDL = [
    "CREATE TABLE mcp_servers (id VARCHAR(40) NOT NULL, name VARCHAR(64) NOT NULL, description TEXT DEFAULT '' NOT "
    "NULL, owner VARCHAR(256), transport VARCHAR(16) NOT NULL, url VARCHAR(2048), headers_encrypted TEXT, "
    "header_names JSONB DEFAULT '[]' NOT NULL, command VARCHAR(1024), args JSONB DEFAULT '[]' NOT NULL, "
    "env_encrypted TEXT, env_names JSONB DEFAULT '[]' NOT NULL, allowed_groups JSONB DEFAULT '[]' NOT NULL, "
    "tools_allowed JSONB, enabled BOOLEAN DEFAULT 'true' NOT NULL, created_by VARCHAR(256) NOT NULL, created_at "
    "TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, "
    "PRIMARY KEY (id))",
    "CREATE INDEX ix_mcp_servers_owner ON mcp_servers (owner)",
]


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS mcp_servers")

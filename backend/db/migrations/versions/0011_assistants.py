"""Assistant stacks: a model, default arguments, a persona, directives, RAG collections and MCP tools under a name.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

DDL = [
    "CREATE TABLE assistants (id VARCHAR(40) NOT NULL, name VARCHAR(256) NOT NULL, description TEXT DEFAULT '' NOT NULL, "
    "model_id VARCHAR(128) NOT NULL, model_args JSONB DEFAULT '{}' NOT NULL, persona JSONB, "
    "directives JSONB DEFAULT '[]' NOT NULL, collections JSONB DEFAULT '[]' NOT NULL, "
    "mcp_tools JSONB DEFAULT '[]' NOT NULL, allowed_groups JSONB DEFAULT '[]' NOT NULL, "
    "created_by VARCHAR(256) NOT NULL, updated_by VARCHAR(256) NOT NULL, "
    "created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, "
    "updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, PRIMARY KEY (id), "
    "CONSTRAINT uq_assistants_name UNIQUE (name))",
]


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS assistants")

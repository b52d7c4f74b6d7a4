"""The prompt library: templates and every revision of each.

Revision ID: 0010
Revises: 0008 (to be re-chained after 0009 at merge)
Create Date: 2026-12-03
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The tables as they are at this revision (frozen: later revisions change them with their own statements).
DDL = [
    "CREATE TABLE prompt_templates (id VARCHAR(40) NOT NULL, owner VARCHAR(256) NOT NULL, kind VARCHAR(16) NOT NULL, "
    "title VARCHAR(256) NOT NULL, body TEXT NOT NULL, sharing VARCHAR(8) NOT NULL, groups JSONB DEFAULT '[]' NOT NULL, "
    "revision INTEGER NOT NULL, created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, "
    "updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, PRIMARY KEY (id))",
    "CREATE INDEX ix_prompt_templates_owner ON prompt_templates (owner, id)",
    "CREATE INDEX ix_prompt_templates_sharing ON prompt_templates (sharing, id)",
    "CREATE TABLE prompt_template_revisions (template_id VARCHAR(40) NOT NULL, revision INTEGER NOT NULL, "
    "kind VARCHAR(16) NOT NULL, title VARCHAR(256) NOT NULL, body TEXT NOT NULL, sharing VARCHAR(8) NOT NULL, "
    "groups JSONB DEFAULT '[]' NOT NULL, created_by VARCHAR(256) NOT NULL, "
    "created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, restored_from INTEGER, "
    "PRIMARY KEY (template_id, revision), "
    "FOREIGN KEY (template_id) REFERENCES prompt_templates (id) ON DELETE CASCADE)",
]


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS prompt_template_revisions")
    op.execute("DROP TABLE IF EXISTS prompt_templates")

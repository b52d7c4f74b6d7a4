"""Chat tool approvals: the tool calls of safe-mode turns waiting for (or given) a user's decision, in the database so
that any backend process can take the decision (backend/chat/tool_approvals.py).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-11
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE chat_tool_approvals (
            session_id VARCHAR(40) NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
            call_id VARCHAR(128) NOT NULL,
            owner VARCHAR(256) NOT NULL,
            wait_id VARCHAR(40) NOT NULL,
            status VARCHAR(16) NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            decided_at TIMESTAMP WITH TIME ZONE,
            PRIMARY KEY (session_id, call_id)
        )"""
    )
    op.execute("CREATE INDEX ix_chat_tool_approvals_expires ON chat_tool_approvals (expires_at)")


def downgrade() -> None:
    op.execute("DROP TABLE chat_tool_approvals")

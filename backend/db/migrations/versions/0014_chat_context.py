"""Chat context: documents put into a session (their extracted text and summary, and a count on the session) and
images generated in one.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

DDL = [
    """CREATE TABLE chat_context_documents (
        id VARCHAR(40) PRIMARY KEY,
        session_id VARCHAR(40) NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
        owner VARCHAR(256) NOT NULL,
        name VARCHAR(255) NOT NULL,
        size_bytes BIGINT NOT NULL,
        sha256 VARCHAR(64) NOT NULL,
        text TEXT NOT NULL,
        chars INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        summary TEXT,
        summary_model VARCHAR(128),
        summarized_at TIMESTAMP WITH TIME ZONE,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        CONSTRAINT uq_chat_context_documents_session_name UNIQUE (session_id, name))""",
    """CREATE TABLE chat_images (
        id VARCHAR(40) PRIMARY KEY,
        session_id VARCHAR(40) NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
        owner VARCHAR(256) NOT NULL,
        message_id VARCHAR(40) REFERENCES chat_messages (id) ON DELETE SET NULL,
        model VARCHAR(128) NOT NULL,
        prompt TEXT NOT NULL,
        revised_prompt TEXT,
        mime VARCHAR(64) NOT NULL,
        size_bytes INTEGER NOT NULL,
        data BYTEA NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now())""",
    "CREATE INDEX ix_chat_images_session ON chat_images (session_id, id)",
    "CREATE INDEX ix_chat_images_message ON chat_images (message_id)",
    # kept by backend/chat/context_docs.py, so that a turn in a session without documents does not look for any
    "ALTER TABLE chat_sessions ADD COLUMN context_documents INTEGER NOT NULL DEFAULT 0",
]


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE chat_sessions DROP COLUMN IF EXISTS context_documents")
    op.execute("DROP TABLE IF EXISTS chat_images")
    op.execute("DROP TABLE IF EXISTS chat_context_documents")

"""Chat sessions: projects (folders), sessions, and their messages as a tree (regenerate and edit keep branches).

Search: each session keeps a full-text vector of its title and messages (``search``, GIN-indexed: word prefixes),
and its title a trigram index (``pg_trgm``, for substrings of titles: the embedded server and RDS both have it;
without it that index is skipped and the same queries still answer, only slower).

Revision ID: 0013
Revises: 0008
Create Date: 2026-12-03
"""

from alembic import op

revision = "0013"
down_revision = "0008"
branch_labels = None
depends_on = None

DDL = [
    """CREATE TABLE chat_projects (
        id VARCHAR(40) PRIMARY KEY,
        owner VARCHAR(256) NOT NULL,
        name VARCHAR(256) NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now())""",
    "CREATE INDEX ix_chat_projects_owner ON chat_projects (owner, id)",
    """CREATE TABLE chat_sessions (
        id VARCHAR(40) PRIMARY KEY,
        owner VARCHAR(256) NOT NULL,
        title VARCHAR(512) NOT NULL,
        project_id VARCHAR(40) REFERENCES chat_projects (id) ON DELETE SET NULL,
        model VARCHAR(128),
        settings JSONB NOT NULL DEFAULT '{}',
        active_leaf_id VARCHAR(40),
        share_token_hash VARCHAR(64) UNIQUE,
        shared_at TIMESTAMP WITH TIME ZONE,
        prompt_tokens BIGINT NOT NULL DEFAULT 0,
        completion_tokens BIGINT NOT NULL DEFAULT 0,
        search TSVECTOR NOT NULL DEFAULT ''::tsvector,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now())""",
    "CREATE INDEX ix_chat_sessions_owner_updated ON chat_sessions (owner, updated_at DESC, id DESC)",
    "CREATE INDEX ix_chat_sessions_project ON chat_sessions (project_id)",
    "CREATE INDEX ix_chat_sessions_search ON chat_sessions USING gin (search)",
    """CREATE TABLE chat_messages (
        id VARCHAR(40) PRIMARY KEY,
        session_id VARCHAR(40) NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
        parent_id VARCHAR(40) REFERENCES chat_messages (id) ON DELETE CASCADE,
        role VARCHAR(16) NOT NULL,
        content TEXT NOT NULL DEFAULT '',
        metadata JSONB NOT NULL DEFAULT '{}',
        status VARCHAR(16) NOT NULL DEFAULT 'complete',
        error TEXT,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now())""",
    "CREATE INDEX ix_chat_messages_session ON chat_messages (session_id, created_at, id)",
    "CREATE INDEX ix_chat_messages_parent ON chat_messages (parent_id)",
]

TRIGRAM = [
    "CREATE INDEX ix_chat_sessions_title_trgm ON chat_sessions USING gin (title gin_trgm_ops)",
]


def upgrade() -> None:
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN "
        "CREATE EXTENSION IF NOT EXISTS pg_trgm; END IF; END $$"
    )
    for statement in DDL:
        op.execute(statement)
    for statement in TRIGRAM:
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN "
            f"EXECUTE '{statement}'; END IF; END $$"
        )


def downgrade() -> None:
    for name in ("chat_messages", "chat_sessions", "chat_projects"):
        op.execute(f"DROP TABLE IF EXISTS {name}")

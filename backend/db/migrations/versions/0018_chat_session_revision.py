"""Chat session revision: a counter the database raises on every change to a session or to any of its messages, so
that a chat turn may build its prompt from the context it remembered from the session's last turn, confirmed by
one cheap read (backend/chat/recent_contexts.py).

Triggers rather than application code: every writer (the turn, the answer writer, edits, imports, compaction,
deletes, the SQL of tests and tools) raises it, and none can forget to. Changes to messages are counted once per
statement and session (transition tables), so bulk writes cost one update per session touched.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE chat_sessions ADD COLUMN revision BIGINT NOT NULL DEFAULT 0")
    op.execute(
        """CREATE FUNCTION chat_sessions_next_revision() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.revision IS NOT DISTINCT FROM OLD.revision THEN
                NEW.revision := OLD.revision + 1;
            END IF;
            RETURN NEW;
        END $$"""
    )
    op.execute(
        """CREATE TRIGGER chat_sessions_revision BEFORE UPDATE ON chat_sessions
        FOR EACH ROW EXECUTE FUNCTION chat_sessions_next_revision()"""
    )
    op.execute(
        """CREATE FUNCTION chat_messages_touch_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE chat_sessions SET revision = revision + 1
            WHERE id IN (SELECT DISTINCT session_id FROM changed_messages);
            RETURN NULL;
        END $$"""
    )
    for event, table in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        op.execute(
            f"""CREATE TRIGGER chat_messages_revision_{event.lower()} AFTER {event} ON chat_messages
            REFERENCING {table} TABLE AS changed_messages
            FOR EACH STATEMENT EXECUTE FUNCTION chat_messages_touch_sessions()"""
        )


def downgrade() -> None:
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER chat_messages_revision_{event} ON chat_messages")
    op.execute("DROP FUNCTION chat_messages_touch_sessions()")
    op.execute("DROP TRIGGER chat_sessions_revision ON chat_sessions")
    op.execute("DROP FUNCTION chat_sessions_next_revision()")
    op.execute("ALTER TABLE chat_sessions DROP COLUMN revision")

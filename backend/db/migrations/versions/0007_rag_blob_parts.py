"""RAG originals in parts (never one whole value in memory); an index for per-user storage quotas.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PART = 1024 * 1024  # backend/rag/blobs.py PART_BYTES


def upgrade() -> None:
    op.execute(
        "CREATE TABLE rag_blob_parts (sha256 VARCHAR(64) NOT NULL, seq INTEGER NOT NULL, data BYTEA NOT NULL, "
        "PRIMARY KEY (sha256, seq), "
        "FOREIGN KEY (sha256) REFERENCES rag_blobs (sha256) ON DELETE CASCADE)"
    )
    op.execute(
        "INSERT INTO rag_blob_parts (sha256, seq, data) "
        f"SELECT b.sha256, g.seq, substring(b.content FROM g.seq * {PART} + 1 FOR {PART}) FROM rag_blobs b "
        f"CROSS JOIN LATERAL generate_series(0, greatest((length(b.content) - 1) / {PART}, 0)) AS g(seq)"
    )
    op.execute("ALTER TABLE rag_blobs DROP COLUMN content")
    op.execute("CREATE INDEX ix_rag_documents_owner ON rag_documents (ingested_by)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_rag_documents_owner")
    op.execute("ALTER TABLE rag_blobs ADD COLUMN content BYTEA")
    op.execute(
        "UPDATE rag_blobs b SET content = coalesce("
        "(SELECT string_agg(p.data, ''::bytea ORDER BY p.seq) FROM rag_blob_parts p WHERE p.sha256 = b.sha256), "
        "''::bytea)"
    )
    op.execute("ALTER TABLE rag_blobs ALTER COLUMN content SET NOT NULL")
    op.execute("DROP TABLE rag_blob_parts")

"""RAG: repositories, collections, originals, documents, ingestion jobs, pipelines; procrastinate's job queue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from alembic import op
from procrastinate.schema import SchemaManager

from backend.db import tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RAG_TABLES = [
    tables.rag_repositories,
    tables.rag_collections,
    tables.rag_blobs,
    tables.rag_documents,
    tables.rag_jobs,
    tables.rag_job_items,
    tables.rag_pipelines,
    tables.rag_pipeline_objects,
]


def upgrade() -> None:
    # pgvector where the server has it (the embedded server and RDS do); without it, pgvector repositories are
    # refused with the database's own message when created, and everything else still works.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN "
        "CREATE EXTENSION IF NOT EXISTS vector; END IF; END $$"
    )
    bind = op.get_bind()
    for table in RAG_TABLES:
        table.create(bind)
    # procrastinate (background jobs, cron) keeps its queue in the same database. Its schema is many statements,
    # which only asyncpg's simple-query path accepts, on the migration's own connection (same transaction).
    schema_sql = SchemaManager.get_schema()
    driver = bind.connection.dbapi_connection
    driver.run_async(lambda conn: conn.execute(schema_sql))  # type: ignore[union-attr]


def downgrade() -> None:
    for table in reversed(RAG_TABLES):
        table.drop(op.get_bind())

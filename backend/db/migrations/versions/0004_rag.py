"""RAG: repositories, collections, originals, documents, ingestion jobs, pipelines; procrastinate's job queue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from alembic import op
from procrastinate.schema import SchemaManager

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The tables as they were at this revision (frozen: later revisions change them with their own statements).
DDL = [
    "CREATE TABLE rag_repositories (id VARCHAR(64) NOT NULL, name VARCHAR(256) NOT NULL, type VARCHAR(16) NOT NULL, options JSONB DEFAULT '{}' NOT NULL, secret_encrypted TEXT, embedding_model VARCHAR(128) NOT NULL, allowed_groups JSONB DEFAULT '[]' NOT NULL, created_by VARCHAR(256) NOT NULL, created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, PRIMARY KEY (id) )",
    "CREATE TABLE rag_collections (repository_id VARCHAR(64) NOT NULL, id VARCHAR(64) NOT NULL, name VARCHAR(256) NOT NULL, description TEXT DEFAULT '' NOT NULL, embedding_model VARCHAR(128) NOT NULL, dimensions INTEGER NOT NULL, chunking JSONB NOT NULL, allow_chunking_override BOOLEAN DEFAULT 'true' NOT NULL, allowed_groups JSONB DEFAULT '[]' NOT NULL, created_by VARCHAR(256) NOT NULL, created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, PRIMARY KEY (repository_id, id) )",
    "CREATE TABLE rag_blobs (sha256 VARCHAR(64) NOT NULL, size BIGINT NOT NULL, content BYTEA NOT NULL, created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, PRIMARY KEY (sha256) )",
    "CREATE TABLE rag_documents (id VARCHAR(40) NOT NULL, repository_id VARCHAR(64) NOT NULL, collection_id VARCHAR(64) NOT NULL, name VARCHAR(512) NOT NULL, source VARCHAR(2048) NOT NULL, sha256 VARCHAR(64) NOT NULL, size BIGINT NOT NULL, content_type VARCHAR(128) NOT NULL, chunk_count INTEGER NOT NULL, chunking JSONB NOT NULL, tags JSONB DEFAULT '[]' NOT NULL, ingested_by VARCHAR(256) NOT NULL, job_id VARCHAR(40), created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, PRIMARY KEY (id), CONSTRAINT uq_rag_documents_source UNIQUE (repository_id, collection_id, source) )",
    "CREATE INDEX ix_rag_documents_sha ON rag_documents (repository_id, collection_id, sha256)",
    "CREATE TABLE rag_jobs (id VARCHAR(40) NOT NULL, repository_id VARCHAR(64) NOT NULL, collection_id VARCHAR(64) NOT NULL, kind VARCHAR(16) NOT NULL, status VARCHAR(16) NOT NULL, chunking JSONB, tags JSONB DEFAULT '[]' NOT NULL, documents_total INTEGER DEFAULT '0' NOT NULL, documents_done INTEGER DEFAULT '0' NOT NULL, documents_failed INTEGER DEFAULT '0' NOT NULL, documents_skipped INTEGER DEFAULT '0' NOT NULL, chunks_done INTEGER DEFAULT '0' NOT NULL, error TEXT, cancel_requested BOOLEAN DEFAULT 'false' NOT NULL, pipeline_id VARCHAR(40), created_by VARCHAR(256) NOT NULL, created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, started_at TIMESTAMP WITH TIME ZONE, finished_at TIMESTAMP WITH TIME ZONE, PRIMARY KEY (id) )",
    "CREATE INDEX ix_rag_jobs_repo_created ON rag_jobs (repository_id, created_at)",
    "CREATE TABLE rag_job_items (job_id VARCHAR(40) NOT NULL, seq INTEGER NOT NULL, action VARCHAR(8) DEFAULT 'ingest' NOT NULL, source VARCHAR(2048) NOT NULL, name VARCHAR(512) NOT NULL, blob_sha256 VARCHAR(64), status VARCHAR(16) NOT NULL, error TEXT, document_id VARCHAR(40), chunks INTEGER, PRIMARY KEY (job_id, seq) )",
    "CREATE TABLE rag_pipelines (id VARCHAR(40) NOT NULL, repository_id VARCHAR(64) NOT NULL, collection_id VARCHAR(64) NOT NULL, name VARCHAR(256) NOT NULL, source JSONB NOT NULL, trigger JSONB NOT NULL, chunking JSONB, tags JSONB DEFAULT '[]' NOT NULL, auto_remove BOOLEAN DEFAULT 'true' NOT NULL, enabled BOOLEAN DEFAULT 'true' NOT NULL, last_run_at TIMESTAMP WITH TIME ZONE, last_error TEXT, created_by VARCHAR(256) NOT NULL, created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, PRIMARY KEY (id) )",
    "CREATE TABLE rag_pipeline_objects (pipeline_id VARCHAR(40) NOT NULL, key VARCHAR(2048) NOT NULL, fingerprint VARCHAR(128) NOT NULL, seen_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, PRIMARY KEY (pipeline_id, key) )",
]
DROP_ORDER = [
    "rag_pipeline_objects",
    "rag_pipelines",
    "rag_job_items",
    "rag_jobs",
    "rag_documents",
    "rag_blobs",
    "rag_collections",
    "rag_repositories",
]


def upgrade() -> None:
    # pgvector where the server has it (the embedded server and RDS do); without it, pgvector repositories are
    # refused with the database's own message when created, and everything else still works.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN "
        "CREATE EXTENSION IF NOT EXISTS vector; END IF; END $$"
    )
    bind = op.get_bind()
    for statement in DDL:
        op.execute(statement)
    # procrastinate (background jobs, cron) keeps its queue in the same database. Its schema is many statements,
    # which only asyncpg's simple-query path accepts, on the migration's own connection (same transaction).
    schema_sql = SchemaManager.get_schema()
    driver = bind.connection.dbapi_connection
    driver.run_async(lambda conn: conn.execute(schema_sql))  # type: ignore[union-attr]


def downgrade() -> None:
    for name in DROP_ORDER:
        op.execute(f"DROP TABLE IF EXISTS {name}")

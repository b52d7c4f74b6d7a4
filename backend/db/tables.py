"""Table definitions (SQLAlchemy Core). Table rows never leave the service layer; routes return schemas."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

metadata = MetaData()

models = Table(
    "models",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("type", String(16), nullable=False),
    Column("hosting", String(16), nullable=False),
    Column("provider_model", String(512)),
    Column("base_url", String(2048)),
    Column("upstream_model", String(512)),
    Column("api_key_encrypted", Text),
    Column("allowed_groups", JSONB, nullable=False, server_default="[]"),
    Column("features", JSONB, nullable=False, server_default="[]"),
    Column("streaming", Boolean, nullable=False),
    Column("context_window", Integer),
    Column("status", String(16), nullable=False),
    Column("managed_by", String(32)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Self-hosted models LISA deploys: {"deployer": "ecs" | "local", "spec": {...}} (backend/lifecycle).
    Column("deployment", JSONB),
    Column("status_reason", Text),  # why the model is Failed: the workflow, its step and the reason
    # Health (backend/lifecycle/health.py): ok | unreachable | unknown; a lifecycle state is never changed by it.
    Column("health", String(16), nullable=False, server_default="unknown"),
    Column("health_reason", Text),
    Column("unreachable_since", DateTime(timezone=True)),  # the first failed check of the current streak
    Column("health_failures", Integer, nullable=False, server_default="0"),
    Column("health_checked_at", DateTime(timezone=True)),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("username", String(256), nullable=False),
    Column("groups", JSONB, nullable=False, server_default="[]"),
    Column("created_by", String(256), nullable=False),
    Column("is_bootstrap", Boolean, nullable=False, server_default="false"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("parent_id", String(40)),  # the token whose holder created this one (revoking it revokes this)
    Index("ix_api_tokens_username", "username"),
    Index("ix_api_tokens_parent_id", "parent_id"),
    Index("ix_api_tokens_created_at", "created_at"),
)

# Who people are: keyed on (issuer, subject), never on a claim users can edit. ``id`` is the stable username every
# other table refers to: the admin-given name for local users (issuer "local"), derived from issuer + sub for OIDC.
users = Table(
    "users",
    metadata,
    Column("id", String(256), primary_key=True),
    Column("issuer", String(512), nullable=False),
    Column("subject", String(512), nullable=False),
    Column("display_name", String(256), nullable=False),
    Column("groups", JSONB, nullable=False, server_default="[]"),  # OIDC: as the provider last confirmed them
    Column("groups_confirmed_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("issuer", "subject", name="uq_users_issuer_subject"),
)

usage_records = Table(
    "usage_records",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("username", String(256), nullable=False),
    Column("token_id", String(40)),
    Column("model", String(128), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("status", Integer, nullable=False),
    Column("estimated", Boolean, nullable=False, server_default="false"),
    Index("ix_usage_created_at", "created_at"),
)

# Usage batches already written (backend/usage/meter.py): a batch retried or replayed from the spill counts once.
usage_batches = Table(
    "usage_batches",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("written_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_usage_batches_written_at", "written_at"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", String(256), nullable=False),
    Column("actor_token_id", String(40)),
    Column("action", String(64), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(512), nullable=False),
    Column("before", JSONB),
    Column("after", JSONB),
    Index("ix_audit_at", "at"),
    Index("ix_audit_resource", "resource_type", "resource_id"),
)

rate_limits = Table(
    "rate_limits",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("subject", String(256), primary_key=True),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("parallel", Integer),
    Column("budget_tokens", BigInteger),
    Column("budget_period", String(8)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Limiter state, changed only under a per-bucket advisory lock (see backend/limits/limiter.py).
limit_hits = Table(
    "limit_hits",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("tokens", Integer, nullable=False),
    Index("ix_limit_hits_key_at", "key", "at"),
)

limit_inflight = Table(
    "limit_inflight",
    metadata,
    Column("request_id", String(40), primary_key=True),
    Column("key", String(300), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
)

limit_budget = Table(
    "limit_budget",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("period_start", DateTime(timezone=True), primary_key=True),
    Column("used", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
)

# --- RAG -------------------------------------------------------------------------------------------------------
rag_repositories = Table(
    "rag_repositories",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("type", String(16), nullable=False),
    Column("options", JSONB, nullable=False, server_default="{}"),  # non-secret store settings
    Column("secret_encrypted", Text),  # external database URL or OpenSearch password, encrypted
    Column("embedding_model", String(128), nullable=False),
    Column("allowed_groups", JSONB, nullable=False, server_default="[]"),
    Column("created_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

rag_collections = Table(
    "rag_collections",
    metadata,
    Column("repository_id", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("embedding_model", String(128), nullable=False),
    Column("dimensions", Integer, nullable=False),
    Column("chunking", JSONB, nullable=False),
    Column("allow_chunking_override", Boolean, nullable=False, server_default="true"),
    Column("allowed_groups", JSONB, nullable=False, server_default="[]"),
    Column("created_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Originals, content-addressed: identical files are stored once, in parts (see backend/rag/blobs.py).
rag_blobs = Table(
    "rag_blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

rag_blob_parts = Table(
    "rag_blob_parts",
    metadata,
    Column("sha256", String(64), ForeignKey("rag_blobs.sha256", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

rag_documents = Table(
    "rag_documents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("repository_id", String(64), nullable=False),
    Column("collection_id", String(64), nullable=False),
    Column("name", String(512), nullable=False),
    Column("source", String(2048), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("chunk_count", Integer, nullable=False),
    Column("chunking", JSONB, nullable=False),
    Column("tags", JSONB, nullable=False, server_default="[]"),
    Column("ingested_by", String(256), nullable=False),
    Column("job_id", String(40)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("repository_id", "collection_id", "source", name="uq_rag_documents_source"),
    Index("ix_rag_documents_sha", "repository_id", "collection_id", "sha256"),
    Index("ix_rag_documents_owner", "ingested_by"),  # storage quotas
)

rag_jobs = Table(
    "rag_jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("repository_id", String(64), nullable=False),
    Column("collection_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # upload | bulk | pipeline
    Column("status", String(16), nullable=False),  # pending | in_progress | completed | failed | cancelled
    Column("chunking", JSONB),  # override of the collection's chunking
    Column("tags", JSONB, nullable=False, server_default="[]"),
    Column("documents_total", Integer, nullable=False, server_default="0"),
    Column("documents_done", Integer, nullable=False, server_default="0"),
    Column("documents_failed", Integer, nullable=False, server_default="0"),
    Column("documents_skipped", Integer, nullable=False, server_default="0"),
    Column("chunks_done", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    Column("cancel_requested", Boolean, nullable=False, server_default="false"),
    Column("pipeline_id", String(40)),
    Column("created_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_rag_jobs_repo_created", "repository_id", "created_at"),
)

rag_job_items = Table(
    "rag_job_items",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("action", String(8), nullable=False, server_default="ingest"),  # ingest | remove
    Column("source", String(2048), nullable=False),
    Column("name", String(512), nullable=False),
    Column("blob_sha256", String(64)),  # uploads: the stored original
    Column("status", String(16), nullable=False),  # pending | completed | skipped | failed | cancelled
    Column("error", Text),
    Column("document_id", String(40)),
    Column("chunks", Integer),
)

rag_pipelines = Table(
    "rag_pipelines",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("repository_id", String(64), nullable=False),
    Column("collection_id", String(64), nullable=False),
    Column("name", String(256), nullable=False),
    Column("source", JSONB, nullable=False),  # {"type": "s3", bucket, prefix, queue_url?} | {"type": "folder", path}
    Column("trigger", JSONB, nullable=False),  # {"type": "event"} | {"type": "schedule", "cron": "..."}
    Column("chunking", JSONB),
    Column("tags", JSONB, nullable=False, server_default="[]"),
    Column("auto_remove", Boolean, nullable=False, server_default="true"),
    Column("enabled", Boolean, nullable=False, server_default="true"),
    Column("last_run_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# What a pipeline last saw of each object, so new, changed and removed files are each acted on exactly once.
rag_pipeline_objects = Table(
    "rag_pipeline_objects",
    metadata,
    Column("pipeline_id", String(40), primary_key=True),
    Column("key", String(2048), primary_key=True),
    Column("fingerprint", String(128), nullable=False),  # S3 ETag, or size+mtime+sha256 of a local file
    Column("seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# --- browser sign-in and keys ---------------------------------------------------------------------------------
# Browser sessions live here; the cookie holds only a random id, stored as its SHA-256, so a session can be ended
# server-side (logout, revocation) and a copied cookie stops working.
browser_sessions = Table(
    "browser_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),  # token | oidc
    Column("username", String(256), nullable=False),
    Column("token_hash", String(64)),  # kind token: the API token signed in with (its revocation ends the session)
    Column("identity", JSONB),  # kind oidc: the identity the provider established
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Index("ix_browser_sessions_expires_at", "expires_at"),
)

# One-time sign-in codes (the link `lisa serve` prints), stored as SHA-256; consumed by the first use.
sign_in_codes = Table(
    "sign_in_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)

# Check values of the keys stored secrets are sealed with (backend/registry/secrets.py): a changed key is refused.
key_checks = Table(
    "key_checks",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# --- configuration -----------------------------------------------------------------------------------------------
# Every write to /api/configuration adds a version; the highest is in force (backend/configuration/store.py).
configuration_versions = Table(
    "configuration_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_by", String(256), nullable=False),
    Column("created_by_token", String(40)),
    Column("features", JSONB, nullable=False, server_default="{}"),  # stored toggles only: {name: bool}
    Column("banner", JSONB, nullable=False, server_default="{}"),
    Column("default_model_id", String(128)),
    Column("changes", JSONB, nullable=False, server_default="[]"),  # [{field, before, after}] against the previous
    Column("restored_from", Integer),
)
# --- chat: prompt library and assistant stacks ----------------------------------------------------------------
# A template's current content; every version, the first included, is also a row of prompt_template_revisions.
prompt_templates = Table(
    "prompt_templates",
    metadata,
    Column("id", String(40), primary_key=True),  # time-ordered ("pt-" + hex), so id order is creation order
    Column("owner", String(256), nullable=False),
    Column("kind", String(16), nullable=False),  # persona | directive
    Column("title", String(256), nullable=False),
    Column("body", Text, nullable=False),
    Column("sharing", String(8), nullable=False),  # private | groups | public
    Column("groups", JSONB, nullable=False, server_default="[]"),
    Column("revision", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_prompt_templates_owner", "owner", "id"),
    Index("ix_prompt_templates_sharing", "sharing", "id"),
)

prompt_template_revisions = Table(
    "prompt_template_revisions",
    metadata,
    Column("template_id", String(40), ForeignKey("prompt_templates.id", ondelete="CASCADE"), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("title", String(256), nullable=False),
    Column("body", Text, nullable=False),
    Column("sharing", String(8), nullable=False),
    Column("groups", JSONB, nullable=False, server_default="[]"),
    Column("created_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("restored_from", Integer),
)

assistants = Table(
    "assistants",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("model_id", String(128), nullable=False),
    Column("model_args", JSONB, nullable=False, server_default="{}"),
    Column("persona", JSONB),  # {"template_id", "revision"} (a pinned revision) | {"text"} | null
    Column("directives", JSONB, nullable=False, server_default="[]"),  # [{"template_id", "revision"}]
    Column("collections", JSONB, nullable=False, server_default="[]"),  # [{"repository_id", "collection_id"}]
    Column("mcp_tools", JSONB, nullable=False, server_default="[]"),  # ["server_id/tool_name"]
    Column("allowed_groups", JSONB, nullable=False, server_default="[]"),
    Column("created_by", String(256), nullable=False),
    Column("updated_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("name", name="uq_assistants_name"),
)

# MCP servers (backend/mcp): global ones (owner NULL) registered by admins, personal ones owned by a user. Header and
# environment values are sealed (backend/registry/secrets.py); their names are kept apart, for display.
mcp_servers = Table(
    "mcp_servers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("owner", String(256)),  # NULL: a global server
    Column("transport", String(16), nullable=False),  # streamable_http | stdio
    Column("url", String(2048)),
    Column("headers_encrypted", Text),
    Column("header_names", JSONB, nullable=False, server_default="[]"),
    Column("command", String(1024)),
    Column("args", JSONB, nullable=False, server_default="[]"),
    Column("env_encrypted", Text),
    Column("env_names", JSONB, nullable=False, server_default="[]"),
    Column("allowed_groups", JSONB, nullable=False, server_default="[]"),
    Column("tools_allowed", JSONB),  # NULL: every tool of the server
    Column("enabled", Boolean, nullable=False, server_default="true"),
    Column("created_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_mcp_servers_owner", "owner"),
)

# --- model lifecycle ---------------------------------------------------------------------------------------------
# When an expensive model runs: a daily window per model (backend/lifecycle/schedules.py). "acted_through" is the
# latest opening or closing of the window already acted on, so each is acted on once, by one backend process.
model_schedules = Table(
    "model_schedules",
    metadata,
    Column("model_id", String(128), ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("timezone", String(64), nullable=False),
    Column("days", JSONB, nullable=False),  # ["mon", "tue", ...]
    Column("start", String(5), nullable=False),  # "HH:MM", local time
    Column("end", String(5), nullable=False),
    Column("acted_through", DateTime(timezone=True)),
    Column("last_action", String(16)),  # enable | disable
    Column("last_action_at", DateTime(timezone=True)),
    Column("last_reason", Text),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# --- chat -------------------------------------------------------------------------------------------------------
# Projects are folders of one owner's sessions; a session's messages form a tree (``parent_id``): regenerating an
# answer or editing a question adds a sibling, and ``active_leaf_id`` says which branch the session shows.
chat_projects = Table(
    "chat_projects",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner", String(256), nullable=False),
    Column("name", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_chat_projects_owner", "owner", "id"),
)

chat_sessions = Table(
    "chat_sessions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner", String(256), nullable=False),
    Column("title", String(512), nullable=False),
    Column("project_id", String(40), ForeignKey("chat_projects.id", ondelete="SET NULL")),
    Column("model", String(128)),  # the session's model, used when a message names none
    Column("settings", JSONB, nullable=False, server_default="{}"),  # system_prompt, arguments, history_buffer, rag
    Column("active_leaf_id", String(40)),  # the last message of the branch the session shows
    Column("share_token_hash", String(64), unique=True),  # SHA-256 of the read-only share link's token
    Column("shared_at", DateTime(timezone=True)),
    Column("prompt_tokens", BigInteger, nullable=False, server_default="0"),
    Column("completion_tokens", BigInteger, nullable=False, server_default="0"),
    # documents in the session's context (backend/chat/context_docs.py keeps it): a turn skips looking when 0
    Column("context_documents", Integer, nullable=False, server_default="0"),
    # Full-text words of the title and every message (backend/chat/search.py keeps it; GIN index in the migration).
    Column("search", TSVECTOR, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Raised by the database on every change to the session or its messages (triggers, migration 0018): a turn
    # builds its prompt from a remembered context only while this is unchanged (backend/chat/recent_contexts.py).
    Column("revision", BigInteger, nullable=False, server_default="0"),
    Index("ix_chat_sessions_owner_updated", "owner", "updated_at", "id"),  # (DESC in the migration)
    Index("ix_chat_sessions_project", "project_id"),
)

chat_messages = Table(
    "chat_messages",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("session_id", String(40), ForeignKey("chat_sessions.id", ondelete="CASCADE"), nullable=False),
    Column("parent_id", String(40), ForeignKey("chat_messages.id", ondelete="CASCADE")),
    Column("role", String(16), nullable=False),  # system | user | assistant | tool
    Column("content", Text, nullable=False, server_default=""),
    Column("metadata", JSONB, nullable=False, server_default="{}"),  # model, arguments, usage, latency, sources...
    Column("status", String(16), nullable=False, server_default="complete"),  # complete | incomplete | error
    Column("error", Text),  # why an answer ended with status "error"
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_chat_messages_session", "session_id", "created_at", "id"),
    Index("ix_chat_messages_parent", "parent_id"),
)

# Documents put into a session's context (their extracted text, not the file) and images generated in a session:
# both go with their session (ON DELETE CASCADE). Ids are time-ordered, so paging by id lists them oldest first.
chat_context_documents = Table(
    "chat_context_documents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("session_id", String(40), ForeignKey("chat_sessions.id", ondelete="CASCADE"), nullable=False),
    Column("owner", String(256), nullable=False),
    Column("name", String(255), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),  # of the uploaded file
    Column("sha256", String(64), nullable=False),  # of the uploaded file
    Column("text", Text, nullable=False),
    Column("chars", Integer, nullable=False),
    Column("tokens", Integer, nullable=False),  # backend/chat/tokens.py count of the text
    Column("summary", Text),
    Column("summary_model", String(128)),
    Column("summarized_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("session_id", "name", name="uq_chat_context_documents_session_name"),
)

chat_images = Table(
    "chat_images",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("session_id", String(40), ForeignKey("chat_sessions.id", ondelete="CASCADE"), nullable=False),
    Column("owner", String(256), nullable=False),
    Column("message_id", String(40), ForeignKey("chat_messages.id", ondelete="SET NULL")),  # the answer showing it
    Column("model", String(128), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("revised_prompt", Text),
    Column("mime", String(64), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_chat_images_session", "session_id", "id"),
    Index("ix_chat_images_message", "message_id"),
)

# Tool calls of safe-mode chat turns waiting for the user's decision, or given one (backend/chat/tool_approvals.py):
# in the database so that the decision may reach any backend process. status: pending | approved | denied | expired.
chat_tool_approvals = Table(
    "chat_tool_approvals",
    metadata,
    Column("session_id", String(40), ForeignKey("chat_sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("call_id", String(128), primary_key=True),
    Column("owner", String(256), nullable=False),
    Column("wait_id", String(40), nullable=False),  # the waiting turn's own mark (a call id may come again)
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Index("ix_chat_tool_approvals_expires", "expires_at"),
)

# A workflow (create, update, enable, disable, delete of a deployed model) as a durable state machine: the step it
# is at, when that step started and its deadline, what it applies (target) and what its steps found (data).
model_workflows = Table(
    "model_workflows",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("model_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # create | update | enable | disable | delete
    Column("state", String(16), nullable=False),  # running | succeeded | failed
    Column("deployer", String(32), nullable=False),
    Column("step_index", Integer, nullable=False, server_default="0"),  # the step running or next to run
    Column("step", String(32)),  # the step started last
    Column("step_started_at", DateTime(timezone=True)),
    Column("step_deadline_at", DateTime(timezone=True)),
    Column("target", JSONB, nullable=False, server_default="{}"),
    Column("data", JSONB, nullable=False, server_default="{}"),
    Column("error", Text),
    Column("created_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Index("uq_model_workflows_running", "model_id", unique=True, postgresql_where=text("state = 'running'")),
    Index("ix_model_workflows_model", "model_id", "created_at"),
)

# What happened to a model: status changes, workflow steps, its deployment's own events, health changes.
model_events = Table(
    "model_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("model_id", String(128), nullable=False),
    Column("workflow_id", String(40)),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("kind", String(16), nullable=False),  # status | step | deployment | health
    Column("status", String(16)),  # the model's status after the event
    Column("step", String(32)),
    Column("message", Text, nullable=False),
    Column("detail", JSONB),
    Column("source_id", String(512)),  # a deployment event's own id: reported twice (after a resume), stored once
    Index("ix_model_events_model", "model_id", "id"),
    Index(
        "uq_model_events_source", "model_id", "source_id", unique=True, postgresql_where=text("source_id IS NOT NULL")
    ),
)

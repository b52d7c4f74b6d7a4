"""Table definitions (SQLAlchemy Core). Table rows never leave the service layer; routes return schemas."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

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
    Index("ix_api_tokens_username", "username"),
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

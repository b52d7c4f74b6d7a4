"""Vector stores behind one factory: a new store is one module here and one branch in :func:`open_store`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend.rag.vectorstores.base import ChunkRecord, CollectionRef, Hit, PageMatch, SearchQuery, VectorStore

if TYPE_CHECKING:
    from backend.net.egress import EgressGuard

__all__ = [
    "ChunkRecord",
    "CollectionRef",
    "Hit",
    "PageMatch",
    "SearchQuery",
    "StoreConfig",
    "VectorStore",
    "open_store",
]


@dataclass(frozen=True)
class StoreConfig:
    """How to reach a repository's store.

    pgvector: ``options["database_url"]`` (SQLAlchemy/asyncpg URL; the platform's own database by default).
    opensearch: ``options`` has ``endpoint``, ``index_prefix``, ``auth`` (``none`` | ``basic`` | ``aws_sigv4``),
    ``username`` (basic), ``region`` and ``service`` (SigV4); ``secret`` is the basic-auth password.
    """

    type: str
    options: dict[str, Any] = field(default_factory=dict)
    secret: str | None = None


def open_store(config: StoreConfig, egress: EgressGuard | None = None) -> VectorStore:
    """With ``egress``, every connection the store opens passes the egress guard (the server always gives one)."""
    if config.type == "pgvector":
        from backend.rag.vectorstores.pgvector import PgVectorStore

        return PgVectorStore(config.options["database_url"], egress=egress)
    if config.type == "opensearch":
        from backend.rag.vectorstores.opensearch import OpenSearchStore

        return OpenSearchStore.from_config(config, egress)
    raise ValueError(f"unknown vector store type '{config.type}'")

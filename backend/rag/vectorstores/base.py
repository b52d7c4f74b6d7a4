"""The one interface every vector store implements; the rest of the backend sees nothing else.

A store holds the chunks of many collections. Each collection is addressed by a :class:`CollectionRef` and lives
in its own table (pgvector) or index (OpenSearch), created by :meth:`VectorStore.ensure_collection`.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# Metadata every chunk carries; stores keep them as filterable fields.
CHUNK_FIELDS = ("document_id", "source", "name", "part", "page", "collection", "tags")


@dataclass(frozen=True, slots=True)
class CollectionRef:
    repository_id: str
    collection_id: str
    dimensions: int

    @property
    def key(self) -> str:
        """A name safe as a table or index suffix: readable prefix plus a hash that keeps it unique."""
        raw = f"{self.repository_id}/{self.collection_id}"
        slug = re.sub(r"[^a-z0-9]+", "_", raw.lower()).strip("_")[:40]
        return f"{slug}_{hashlib.sha256(raw.encode()).hexdigest()[:10]}"


@dataclass(slots=True)
class ChunkRecord:
    """One chunk ready to store. ``metadata`` holds CHUNK_FIELDS (tags is a list of strings) and may hold more."""

    text: str
    embedding: list[float]
    metadata: dict[str, Any]
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = chunk_id(str(self.metadata.get("document_id", "")), int(self.metadata.get("part", 0)), self.text)


def chunk_id(document_id: str, part: int, text: str) -> str:
    """Deterministic: the same chunk of the same document always gets the same id, so a retried write converges."""
    digest = hashlib.sha256(f"{document_id}\x00{part}\x00{text}".encode()).hexdigest()
    return str(uuid.UUID(digest[:32]))


@dataclass(slots=True)
class SearchQuery:
    """What to look for. ``hybrid_weight`` is the weight of full-text relevance in [0, 1]: 0 is pure vector
    search, 1 pure full-text; in between the two normalised scores are blended."""

    vector: list[float]
    text: str
    top_k: int = 5
    hybrid_weight: float = 0.0
    tags: list[str] = field(default_factory=list)  # a chunk matches when it carries any of these
    sources: list[str] = field(default_factory=list)  # exact source URIs/paths
    document_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Hit:
    id: str
    text: str
    score: float  # higher is better; cosine similarity for pure vector search
    metadata: dict[str, Any]
    similarity: float | None = None  # cosine similarity to the query, when the vector search found the chunk


class PageMatch(NamedTuple):
    """A document's page vector against a query: its cosine similarity, and how many chunks it was averaged over
    (the page's length, for the page-length penalty of backend/rag/ranking.py)."""

    similarity: float
    chunks: int


class VectorStore(ABC):
    """A vector store (one per repository)."""

    @abstractmethod
    async def ensure_collection(self, ref: CollectionRef) -> None:
        """Create the table/index (and its vector and full-text indexes) if missing; idempotent."""

    @abstractmethod
    async def drop_collection(self, ref: CollectionRef) -> None:
        """Remove the collection's table/index and every chunk in it; idempotent."""

    @abstractmethod
    async def replace_document(self, ref: CollectionRef, document_id: str, chunks: Sequence[ChunkRecord]) -> None:
        """Make ``chunks`` the document's only chunks. Readers never see a mix of old and new chunks where the
        store can promise it (pgvector: one transaction); a retried call converges to the same state."""

    @abstractmethod
    async def delete_document(self, ref: CollectionRef, document_id: str) -> int:
        """Delete every chunk of the document; returns how many went."""

    @abstractmethod
    async def count(self, ref: CollectionRef, document_id: str | None = None) -> int:
        """Chunks in the collection, or of one document."""

    @abstractmethod
    async def search(self, ref: CollectionRef, query: SearchQuery) -> list[Hit]:
        """The best ``top_k`` chunks, best first."""

    @abstractmethod
    async def page_similarity(
        self, ref: CollectionRef, vector: Sequence[float], document_ids: Sequence[str]
    ) -> dict[str, PageMatch]:
        """Cosine similarity of ``vector`` to each listed document's page vector, the mean of its chunks' embeddings
        in this collection, with the number of those chunks (a document with no chunks here is left out). Page
        ranking uses both as page-level priors (backend/rag/ranking.py)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""


def normalise(scores: Sequence[float]) -> list[float]:
    """Min-max to [0, 1] (all equal: all 1.0), so scores of different kinds can be blended."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi - lo < 1e-12:
        return [1.0 for _ in scores]
    return [(s - lo) / (hi - lo) for s in scores]


def fuse(dense: Sequence[Hit], sparse: Sequence[Hit], weight: float, top_k: int) -> list[Hit]:
    """Blend vector and full-text results: ``(1 - weight) * dense + weight * sparse`` on normalised scores; a
    chunk found by only one side gets 0 from the other."""
    blended: dict[str, Hit] = {}
    totals: dict[str, float] = {}
    for hits, w in ((dense, 1.0 - weight), (sparse, weight)):
        for hit, norm in zip(hits, normalise([h.score for h in hits]), strict=True):
            blended.setdefault(hit.id, hit)
            totals[hit.id] = totals.get(hit.id, 0.0) + w * norm
    ranked = sorted(blended, key=lambda i: totals[i], reverse=True)[:top_k]
    return [Hit(i, blended[i].text, totals[i], blended[i].metadata, blended[i].similarity) for i in ranked]

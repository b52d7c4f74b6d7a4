"""OpenSearch vector store: one index per collection, k-NN on ``embedding`` and BM25 on ``text``.

Query bodies are built by the pure functions :func:`filters`, :func:`knn_query` and :func:`match_query`, so
their shape can be tested without a server. See ``docs/rag-opensearch.md`` for configuration.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opensearchpy import AsyncHttpConnection, AsyncOpenSearch
from opensearchpy.exceptions import NotFoundError, RequestError

from backend.rag.vectorstores.base import (
    CHUNK_FIELDS,
    ChunkRecord,
    CollectionRef,
    Hit,
    PageMatch,
    SearchQuery,
    VectorStore,
    fuse,
)
from backend.rag.vectorstores.opensearch_config import (
    guarded_connection,
    parse_config,
)

if TYPE_CHECKING:
    from backend.net.egress import EgressGuard
    from backend.rag.vectorstores import StoreConfig

MAX_TOP_K = 2500  # a hybrid search fetches 4 * top_k per side; OpenSearch returns at most 10,000 hits
PAGE_VECTOR_CHUNKS = 10_000  # chunks read back for page vectors: OpenSearch's default result window
BULK_BATCH = 200  # chunks per bulk request: bounded request size even for large embeddings
_STORED = (*CHUNK_FIELDS, "text", "embedding", "metadata")


class OpenSearchStoreError(RuntimeError):
    """OpenSearch answered, but not as this store needs (bulk item failures, an unusable index)."""


class KnnNotSupportedError(OpenSearchStoreError):
    """The server cannot run ``knn`` queries (no k-NN plugin, or a test double such as osmem-server)."""


# --- pure functions: index layout and query bodies -------------------------------------------------------------


def index_name(prefix: str, ref: CollectionRef) -> str:
    return f"{prefix}-{ref.key}".lower()


def pages_index_name(prefix: str, ref: CollectionRef) -> str:
    """The collection's page vectors, one document per LISA document. A key has no '.', so no collection's own index
    can be named like another's page index."""
    return f"{index_name(prefix, ref)}.pages"


def pages_index_body(dimensions: int, engine: str = "lucene") -> dict[str, Any]:
    """A page document: the mean of the document's chunk embeddings and how many chunks it is over."""
    return knn_index({"embedding": knn_field(dimensions, engine), "chunks": {"type": "integer"}})


def add_into(total: list[float], vector: Sequence[float]) -> None:
    for i, value in enumerate(vector):
        total[i] += float(value)


def mean_vector(chunks: Sequence[ChunkRecord], dimensions: int) -> list[float]:
    total = [0.0] * dimensions
    for chunk in chunks:
        add_into(total, chunk.embedding)
    return [value / len(chunks) for value in total] if chunks else total


def knn_index(properties: dict[str, Any]) -> dict[str, Any]:
    """An index with k-NN on and a strict mapping of ``properties``."""
    return {"settings": {"index": {"knn": True}}, "mappings": {"dynamic": "strict", "properties": properties}}


def knn_field(dimensions: int, engine: str) -> dict[str, Any]:
    return {
        "type": "knn_vector",
        "dimension": dimensions,
        "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": engine},
    }


def index_body(dimensions: int, engine: str = "lucene") -> dict[str, Any]:
    """Settings and mapping of a collection's index. ``metadata`` is kept in ``_source`` but not indexed."""
    return knn_index(
        {
            "text": {"type": "text", "analyzer": "english"},
            "embedding": knn_field(dimensions, engine),
            "document_id": {"type": "keyword"},
            "source": {"type": "keyword"},
            "name": {"type": "keyword"},
            "collection": {"type": "keyword"},
            "tags": {"type": "keyword"},
            "part": {"type": "integer"},
            "page": {"type": "integer"},
            "metadata": {"type": "object", "enabled": False},
        }
    )


def filters(query: SearchQuery) -> list[dict[str, Any]]:
    """Filter clauses, ANDed together; each matches a chunk carrying any of its values."""
    clauses: list[dict[str, Any]] = []
    for values, fieldname in ((query.tags, "tags"), (query.sources, "source"), (query.document_ids, "document_id")):
        if values:
            clauses.append({"terms": {fieldname: list(values)}})
    return clauses


def knn_query(query: SearchQuery, k: int) -> dict[str, Any]:
    """An approximate k-NN query; filters go inside it so the k nearest are chosen among matching chunks."""
    clause: dict[str, Any] = {"vector": list(query.vector), "k": k}
    where = filters(query)
    if where:
        clause["filter"] = {"bool": {"filter": where}}
    return {"knn": {"embedding": clause}}


def match_query(query: SearchQuery) -> dict[str, Any]:
    """Full-text relevance on ``text`` (any term may match), restricted by the same filters."""
    match = {"match": {"text": {"query": query.text, "operator": "or"}}}
    where = filters(query)
    return {"bool": {"must": [match], "filter": where}} if where else match


def search_body(query: dict[str, Any], size: int) -> dict[str, Any]:
    return {"size": size, "query": query, "_source": {"excludes": ["embedding"]}}


def cosine_from_knn_score(score: float) -> float:
    """OpenSearch scores ``cosinesimil`` as ``(1 + cos) / 2`` (lucene and faiss alike); Hit.score is ``cos``."""
    return 2.0 * score - 1.0


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity; 0 when either vector is zero."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms > 0 else 0.0


def chunk_document(chunk: ChunkRecord, document_id: str) -> dict[str, Any]:
    """The stored form of a chunk: CHUNK_FIELDS as indexed fields, anything else under ``metadata``."""
    meta = chunk.metadata
    tags = meta.get("tags") or []
    doc: dict[str, Any] = {
        "text": chunk.text,
        "embedding": list(chunk.embedding),
        "document_id": document_id,
        "source": meta.get("source"),
        "name": meta.get("name"),
        "collection": meta.get("collection"),
        "tags": [tags] if isinstance(tags, str) else [str(t) for t in tags],
        "part": meta.get("part"),
        "page": meta.get("page"),
        "metadata": {k: v for k, v in meta.items() if k not in CHUNK_FIELDS},
    }
    return {k: v for k, v in doc.items() if v is not None}


def hit_from(raw: dict[str, Any], score: float, similarity: float | None = None) -> Hit:
    source: dict[str, Any] = raw.get("_source") or {}
    metadata: dict[str, Any] = dict(source.get("metadata") or {})
    metadata.update({k: source[k] for k in CHUNK_FIELDS if k in source})
    return Hit(
        id=str(raw["_id"]), text=str(source.get("text", "")), score=score, metadata=metadata, similarity=similarity
    )


def knn_unsupported_reason(exc: RequestError) -> str | None:
    """The server's reason when a 400 says the ``knn`` query itself is unknown or unsupported (as opposed to a
    bad vector or filter); None otherwise."""
    info: Any = exc.info
    if not isinstance(info, dict):  # a body sent without a JSON content type arrives as the raw text
        try:
            info = json.loads(str(exc.error))
        except ValueError:
            info = {}
    error = info.get("error") if isinstance(info, dict) else None
    causes = [error, *(error.get("root_cause") or [])] if isinstance(error, dict) else []
    for cause in causes:
        kind = str(cause.get("type", ""))
        reason = str(cause.get("reason", ""))
        lowered = reason.lower()
        if "knn" in lowered and (
            kind in ("unsupported_operation_exception", "parsing_exception", "named_object_not_found_exception")
            or "not supported" in lowered
            or "unknown query" in lowered
        ):
            return reason
    return None


# --- the store -------------------------------------------------------------------------------------------------


class OpenSearchStore(VectorStore):
    def __init__(self, client: AsyncOpenSearch, *, index_prefix: str = "lisa", engine: str = "lucene") -> None:
        self._client = client
        self._prefix = index_prefix
        self._engine = engine

    @classmethod
    def from_config(cls, config: StoreConfig, egress: EgressGuard | None = None) -> OpenSearchStore:
        options = parse_config(config)
        client = AsyncOpenSearch(
            hosts=[options.endpoint],
            http_auth=options.http_auth,
            use_ssl=options.endpoint.startswith("https:"),
            verify_certs=True,
            connection_class=AsyncHttpConnection if egress is None else guarded_connection(egress),
            timeout=30,
        )
        return cls(client, index_prefix=options.index_prefix, engine=options.engine)

    @property
    def client(self) -> AsyncOpenSearch:
        return self._client

    def index(self, ref: CollectionRef) -> str:
        return index_name(self._prefix, ref)

    def pages_index(self, ref: CollectionRef) -> str:
        return pages_index_name(self._prefix, ref)

    async def ensure_collection(self, ref: CollectionRef) -> None:
        index = self.index(ref)
        # page vectors: made with the collection, or beside one made before they were kept (its documents' page
        # vectors are then averaged from their chunks at search time until each is written again)
        await self._create(self.pages_index(ref), pages_index_body(ref.dimensions, self._engine))
        if await self._create(index, index_body(ref.dimensions, self._engine)):
            return
        mapping = await self._client.indices.get_mapping(index=index)
        embedding = mapping.get(index, {}).get("mappings", {}).get("properties", {}).get("embedding", {})
        if embedding.get("type") != "knn_vector" or int(embedding.get("dimension", -1)) != ref.dimensions:
            raise OpenSearchStoreError(
                f"index '{index}' exists but its 'embedding' is not a knn_vector of dimension {ref.dimensions}"
            )

    async def _create(self, index: str, body: dict[str, Any]) -> bool:
        """Create ``index`` unless it exists; True when this call created it."""
        if await self._client.indices.exists(index=index):
            return False
        try:
            await self._client.indices.create(index=index, body=body)
            return True
        except RequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
            return False

    async def drop_collection(self, ref: CollectionRef) -> None:
        await self._client.indices.delete(index=self.index(ref), ignore_unavailable=True)
        await self._client.indices.delete(index=self.pages_index(ref), ignore_unavailable=True)

    async def replace_document(self, ref: CollectionRef, document_id: str, chunks: Sequence[ChunkRecord]) -> None:
        """Index the new chunks under their deterministic ids, then delete the document's other chunks.

        Not atomic: between the two steps a reader may see old and new chunks together. A retry converges:
        re-indexing an id overwrites it, and the delete removes whatever is left of earlier versions. The page vector
        is written last, from the chunks given; a call that fails before it leaves the old one (or none) until the
        retry.
        """
        for chunk in chunks:
            if len(chunk.embedding) != ref.dimensions:
                raise ValueError(
                    f"chunk {chunk.id}: embedding has {len(chunk.embedding)} dimensions, not {ref.dimensions}"
                )
        await self.ensure_collection(ref)  # never let a bulk write auto-create an index with a guessed mapping
        index = self.index(ref)
        for start in range(0, len(chunks), BULK_BATCH):
            body: list[dict[str, Any]] = []
            for chunk in chunks[start : start + BULK_BATCH]:
                body.append({"index": {"_index": index, "_id": chunk.id}})
                body.append(chunk_document(chunk, document_id))
            result = await self._client.bulk(body=body)
            if result.get("errors"):
                failed = [item["index"] for item in result.get("items", []) if "error" in item.get("index", {})]
                reasons = "; ".join(f"{f.get('_id')}: {f['error'].get('reason', f['error'])}" for f in failed[:3])
                raise OpenSearchStoreError(f"bulk write to '{index}' failed for {len(failed)} chunk(s): {reasons}")
        # Make the new chunks and any unrefreshed leftovers of an interrupted earlier call visible to the delete.
        await self._client.indices.refresh(index=index)
        keep = [chunk.id for chunk in chunks]
        stale: dict[str, Any] = {"bool": {"filter": [{"term": {"document_id": document_id}}]}}
        if keep:
            stale["bool"]["must_not"] = [{"ids": {"values": keep}}]
        await self._delete_by_query(index, stale)
        if chunks:
            page = {"embedding": mean_vector(chunks, ref.dimensions), "chunks": len(chunks)}
            await self._client.index(index=self.pages_index(ref), id=document_id, body=page, refresh=True)
        else:
            await self._forget_page(ref, document_id)

    async def _forget_page(self, ref: CollectionRef, document_id: str) -> None:
        with contextlib.suppress(NotFoundError):
            await self._client.delete(index=self.pages_index(ref), id=document_id, refresh=True)

    async def delete_document(self, ref: CollectionRef, document_id: str) -> int:
        await self._forget_page(ref, document_id)
        try:
            return await self._delete_by_query(self.index(ref), {"term": {"document_id": document_id}})
        except NotFoundError:
            return 0

    async def count(self, ref: CollectionRef, document_id: str | None = None) -> int:
        body = {"query": {"term": {"document_id": document_id}}} if document_id is not None else None
        try:
            result = await self._client.count(index=self.index(ref), body=body)
        except NotFoundError:
            return 0
        return int(result["count"])

    async def search(self, ref: CollectionRef, query: SearchQuery) -> list[Hit]:
        if not 1 <= query.top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}")
        if not 0.0 <= query.hybrid_weight <= 1.0:
            raise ValueError("hybrid_weight must be in [0, 1]")
        weight = query.hybrid_weight
        has_text = bool(query.text.strip())
        if weight >= 1.0:
            return await self._match(ref, query, query.top_k) if has_text else []
        if len(query.vector) != ref.dimensions:
            raise ValueError(f"query vector has {len(query.vector)} dimensions, not {ref.dimensions}")
        if weight <= 0.0 or not has_text:
            return await self._knn(ref, query, query.top_k)
        size = max(query.top_k * 4, 20)
        dense = await self._knn(ref, query, size)
        sparse = await self._match(ref, query, size)
        return fuse(dense, sparse, weight, query.top_k)

    async def page_similarity(
        self, ref: CollectionRef, vector: Sequence[float], document_ids: Sequence[str]
    ) -> dict[str, PageMatch]:
        """One page document a document, kept by ``replace_document``. A document written before page vectors were
        kept has its chunk embeddings read back instead (at most ``PAGE_VECTOR_CHUNKS`` chunks in all) and averaged
        here, OpenSearch having no mean of a ``knn_vector`` field; its chunk count is then the chunks read back."""
        ids = list(dict.fromkeys(document_ids))
        if not ids:
            return {}
        if len(vector) != ref.dimensions:
            raise ValueError(f"query vector has {len(vector)} dimensions, not {ref.dimensions}")
        found = await self._stored_pages(ref, vector, ids)
        missing = [d for d in ids if d not in found]
        if missing:
            found.update(await self._averaged_pages(ref, vector, missing))
        return found

    async def _stored_pages(self, ref: CollectionRef, vector: Sequence[float], ids: list[str]) -> dict[str, PageMatch]:
        try:
            result = await self._client.mget(index=self.pages_index(ref), body={"ids": ids})
        except NotFoundError:
            return {}
        found: dict[str, PageMatch] = {}
        for doc in result.get("docs", []):
            source = doc.get("_source") or {}
            embedding, chunks = source.get("embedding"), source.get("chunks")
            if doc.get("found") and isinstance(embedding, list) and len(embedding) == ref.dimensions and chunks:
                found[str(doc["_id"])] = PageMatch(cosine(vector, [float(x) for x in embedding]), int(chunks))
        return found

    async def _averaged_pages(
        self, ref: CollectionRef, vector: Sequence[float], ids: list[str]
    ) -> dict[str, PageMatch]:
        body = {
            "size": PAGE_VECTOR_CHUNKS,
            "query": {"bool": {"filter": [{"terms": {"document_id": ids}}]}},
            "_source": {"includes": ["document_id", "embedding"]},
        }
        try:
            result = await self._client.search(index=self.index(ref), body=body)
        except NotFoundError:
            return {}
        sums: dict[str, list[float]] = {}
        counts: dict[str, int] = {}
        for raw in result["hits"]["hits"]:
            source = raw.get("_source") or {}
            embedding = source.get("embedding")
            if not isinstance(embedding, list) or len(embedding) != ref.dimensions:
                continue
            document_id = str(source.get("document_id"))
            total = sums.setdefault(document_id, [0.0] * ref.dimensions)
            counts[document_id] = counts.get(document_id, 0) + 1
            add_into(total, embedding)
        return {doc: PageMatch(cosine(vector, total), counts[doc]) for doc, total in sums.items()}

    async def close(self) -> None:
        await self._client.close()

    async def _knn(self, ref: CollectionRef, query: SearchQuery, k: int) -> list[Hit]:
        try:
            result = await self._client.search(index=self.index(ref), body=search_body(knn_query(query, k), k))
        except NotFoundError:
            return []
        except RequestError as exc:
            reason = knn_unsupported_reason(exc)
            if reason is not None:
                raise KnnNotSupportedError(
                    f"this OpenSearch server cannot run k-NN queries (is the k-NN plugin installed?): {reason}"
                ) from exc
            raise
        hits = result["hits"]["hits"][:k]
        cosines = [cosine_from_knn_score(float(raw["_score"])) for raw in hits]
        return [hit_from(raw, c, similarity=c) for raw, c in zip(hits, cosines, strict=True)]

    async def _match(self, ref: CollectionRef, query: SearchQuery, size: int) -> list[Hit]:
        try:
            result = await self._client.search(index=self.index(ref), body=search_body(match_query(query), size))
        except NotFoundError:
            return []
        return [hit_from(raw, float(raw["_score"])) for raw in result["hits"]["hits"]]

    async def _delete_by_query(self, index: str, query: dict[str, Any]) -> int:
        result = await self._client.delete_by_query(
            index=index, body={"query": query}, conflicts="proceed", refresh=True
        )
        if result.get("failures"):
            raise OpenSearchStoreError(f"delete from '{index}' failed: {result['failures'][:3]}")
        return int(result.get("deleted", 0))

"""pgvector: one table per collection, laid out as langchain-postgres' ``PGVectorStore`` expects.

The table is created by langchain-postgres' ``PGEngine`` (so :meth:`PgVectorStore.langchain` hands a notebook a
real LangChain vector store over the same rows), plus a generated full-text column and the indexes search needs:
HNSW on the embedding (cosine), GIN on the text and on tags, b-tree on document_id.

Writes and hybrid search are our own SQL: a document's chunks are replaced in one transaction (readers see the
old set or the new one, never a mix), and full-text matching ORs the query's terms, where LangChain's
``plainto_tsquery`` ANDs them and so misses paraphrased questions. In hybrid search the full-text side ranks (by
every term of the query) only the chunks holding one of the query's distinctive terms, or found by the vector side:
ranking every chunk that holds any term, common ones included, made it rank most of a large collection on each
search (0.7 s at 100k chunks; docs/benchmarks.md, "RAG search"). Full-text-only search still ranks them all.

Beside each chunk table, ``rag_pages_<key>`` keeps every document's page vector (the mean of its chunk embeddings,
page ranking's prior: backend/rag/ranking.py), rewritten in the transaction that replaces the document's chunks, so a
search reads one row per candidate page instead of averaging every chunk of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.db.engine import create_engine
from backend.rag.vectorstores.base import (
    ChunkRecord,
    CollectionRef,
    Hit,
    PageMatch,
    SearchQuery,
    VectorStore,
    fuse,
)

if TYPE_CHECKING:
    from backend.net.egress import EgressGuard

EF_SEARCH = 100  # HNSW candidates per query: recall@10 >= 0.95 at 100k chunks (see docs/benchmarks.md)
TS_CONFIG = "english"
INSERT_BATCH = 500
# Full-text relevance: how often the query's terms occur, over 1 + log(length). Cover density (ts_rank_cd) rewards
# terms standing close together, which an ORed paraphrase rarely gives: on the PostgreSQL-manual dev questions it
# put the answering page first for 10 of 30 questions where ts_rank did for 16 (docs/rag-quality.md).
RANK = "ts_rank(content_tsv, tsq.q, 1)"
# Hybrid search: a query term is distinctive when the table's statistics put it in at most this many chunks (the
# query's rarest term always is). Ranking costs a row each; this bounds the rows ranked (docs/benchmarks.md).
TERM_MAX_ROWS = 1000
META_COLUMNS = ("document_id", "source", "name", "part", "page", "collection", "tags")
SELECT_COLUMNS = "langchain_id, content, document_id, source, name, part, page, collection, tags, langchain_metadata"


def table_name(ref: CollectionRef) -> str:
    return f"rag_chunks_{ref.key}"


def pages_table_name(ref: CollectionRef) -> str:
    """The collection's page vectors: one row per document, the mean of its chunks' embeddings."""
    return f"rag_pages_{ref.key}"


def vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class PgVectorStore(VectorStore):
    def __init__(
        self, database_url: str, engine: AsyncEngine | None = None, *, egress: EgressGuard | None = None
    ) -> None:
        self.database_url = database_url
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else create_engine(database_url, 5)
        if self._owns_engine and egress is not None:  # an external database: re-checked before each new connection
            egress.guard_engine(self.engine, database_url, "pgvector database_url")
        self._ensured: set[str] = set()
        self._paged: set[str] = set()  # chunk tables whose page-vector table is known to exist

    async def ensure_collection(self, ref: CollectionRef) -> None:
        table = table_name(ref)
        if table in self._ensured and table in self._paged:  # a search may have seen the chunk table alone
            return
        async with self.engine.begin() as conn:
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": table})
            exists = await conn.scalar(sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"public.{table}"})
            if not exists:
                await conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
                await conn.execute(sa.text(_create_table_sql(table, ref.dimensions)))
                for statement in _index_sql(table):
                    await conn.execute(sa.text(statement))
            pages = pages_table_name(ref)
            if not await conn.scalar(sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"public.{pages}"}):
                # new, or a collection made before page vectors were kept: filled from the chunks already there
                await conn.execute(sa.text(_create_pages_sql(pages, ref.dimensions)))
                await conn.execute(sa.text(page_vectors_sql(table, pages)))
        self._ensured.add(table)
        self._paged.add(table)

    async def drop_collection(self, ref: CollectionRef) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table_name(ref)}"'))
            await conn.execute(sa.text(f'DROP TABLE IF EXISTS "{pages_table_name(ref)}"'))
        self._ensured.discard(table_name(ref))
        self._paged.discard(table_name(ref))

    async def replace_document(self, ref: CollectionRef, document_id: str, chunks: Sequence[ChunkRecord]) -> None:
        await self.ensure_collection(ref)
        table, pages = table_name(ref), pages_table_name(ref)
        async with self.engine.begin() as conn:  # chunks and page vector change together
            await conn.execute(sa.text(f'DELETE FROM "{table}" WHERE document_id = :d'), {"d": document_id})
            await conn.execute(sa.text(f'DELETE FROM "{pages}" WHERE document_id = :d'), {"d": document_id})
            await _insert(conn, table, chunks)
            await conn.execute(sa.text(page_vectors_sql(table, pages, one=True)), {"d": document_id})

    async def delete_document(self, ref: CollectionRef, document_id: str) -> int:
        if not await self._exists(ref):
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.text(f'DELETE FROM "{table_name(ref)}" WHERE document_id = :d'), {"d": document_id}
            )
            if await self._has_pages(conn, ref):
                await conn.execute(
                    sa.text(f'DELETE FROM "{pages_table_name(ref)}" WHERE document_id = :d'), {"d": document_id}
                )
        return int(result.rowcount or 0)

    async def count(self, ref: CollectionRef, document_id: str | None = None) -> int:
        if not await self._exists(ref):
            return 0
        sql = f'SELECT count(*) FROM "{table_name(ref)}"'
        params: dict[str, Any] = {}
        if document_id is not None:
            sql += " WHERE document_id = :d"
            params["d"] = document_id
        async with self.engine.connect() as conn:
            return int(await conn.scalar(sa.text(sql), params) or 0)

    async def search(self, ref: CollectionRef, query: SearchQuery) -> list[Hit]:
        if not await self._exists(ref):
            return []
        weight = min(max(query.hybrid_weight, 0.0), 1.0)
        pool = query.top_k if weight in (0.0, 1.0) else max(query.top_k * 4, 20)
        async with self.engine.connect() as conn:
            dense = await self._dense(conn, ref, query, pool) if weight < 1.0 else []
            sparse = (
                await self._sparse(conn, ref, query, pool, [h.id for h in dense])
                if weight > 0.0 and query.text.strip()
                else []
            )
        if weight == 0.0:
            return dense[: query.top_k]
        if weight == 1.0:
            return sparse[: query.top_k]
        return fuse(dense, sparse, weight, query.top_k)

    async def page_similarity(
        self, ref: CollectionRef, vector: Sequence[float], document_ids: Sequence[str]
    ) -> dict[str, PageMatch]:
        if not document_ids or not await self._exists(ref):
            return {}
        if len(vector) != ref.dimensions:
            raise ValueError(f"query vector has {len(vector)} dimensions, not {ref.dimensions}")
        ids = list(dict.fromkeys(document_ids))
        params = {"v": vector_literal(list(vector)), "d": ids}
        found: dict[str, PageMatch] = {}
        async with self.engine.connect() as conn:
            if await self._has_pages(conn, ref):  # kept by replace_document: one row per document
                rows = await conn.execute(
                    sa.text(
                        "SELECT document_id, 1 - (embedding <=> CAST(:v AS vector)) AS similarity, chunks "
                        f'FROM "{pages_table_name(ref)}" WHERE document_id = ANY(CAST(:d AS text[]))'
                    ),
                    params,
                )
                found = {
                    str(r.document_id): PageMatch(float(r.similarity), int(r.chunks))
                    for r in rows
                    if r.similarity is not None
                }
            missing = [d for d in ids if d not in found]
            if missing:  # chunks written around the store (a bulk load): averaged here, as the table would have
                rows = await conn.execute(
                    sa.text(
                        "SELECT document_id, 1 - (avg(embedding) <=> CAST(:v AS vector)) AS similarity, "
                        f'count(*) AS chunks FROM "{table_name(ref)}" WHERE document_id = ANY(CAST(:d AS text[])) '
                        "GROUP BY document_id"
                    ),
                    {**params, "d": missing},
                )
                found.update(
                    {
                        str(r.document_id): PageMatch(float(r.similarity), int(r.chunks))
                        for r in rows
                        if r.similarity is not None
                    }
                )
            await conn.rollback()
        return found

    async def _has_pages(self, conn: AsyncConnection, ref: CollectionRef) -> bool:
        table = table_name(ref)
        if table in self._paged:
            return True
        exists = await conn.scalar(
            sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"public.{pages_table_name(ref)}"}
        )
        if exists:
            self._paged.add(table)
        return bool(exists)

    async def close(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    async def langchain(self, ref: CollectionRef, embeddings: Any) -> Any:
        """A langchain-postgres ``PGVectorStore`` over this collection's table: LangChain's own similarity search,
        MMR and ``as_retriever()`` on the chunks LISA ingested (read it; write through LISA's ingestion)."""
        from langchain_postgres import PGEngine, PGVectorStore

        return await PGVectorStore.create(
            PGEngine.from_engine(self.engine),
            embedding_service=embeddings,
            table_name=table_name(ref),
            id_column="langchain_id",
            content_column="content",
            embedding_column="embedding",
            metadata_columns=list(META_COLUMNS),
            metadata_json_column="langchain_metadata",
        )

    async def _exists(self, ref: CollectionRef) -> bool:
        table = table_name(ref)
        if table in self._ensured:
            return True
        async with self.engine.connect() as conn:
            found = bool(await conn.scalar(sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"public.{table}"}))
        if found:
            self._ensured.add(table)
        return found

    async def _dense(self, conn: AsyncConnection, ref: CollectionRef, query: SearchQuery, limit: int) -> list[Hit]:
        where, params = _filters(query)
        params.update(v=vector_literal(query.vector), k=limit)
        # SET LOCAL needs a transaction; iterative scans keep filtered queries from coming back short.
        await conn.execute(sa.text(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, limit)}"))
        if where:
            await conn.execute(sa.text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        rows = await conn.execute(
            sa.text(
                f"SELECT {SELECT_COLUMNS}, embedding <=> CAST(:v AS vector) AS distance "
                f'FROM "{table_name(ref)}" {where} ORDER BY distance LIMIT :k'
            ),
            params,
        )
        hits = [_hit(r, 1.0 - float(r.distance), similarity=1.0 - float(r.distance)) for r in rows]
        hits.sort(key=lambda h: h.score, reverse=True)  # relaxed_order may return near-sorted rows
        await conn.rollback()
        return hits

    async def _sparse(
        self, conn: AsyncConnection, ref: CollectionRef, query: SearchQuery, limit: int, candidates: list[str]
    ) -> list[Hit]:
        """Chunks ranked by every term of the query, ORed. With ``candidates`` (the vector side's ids: hybrid search)
        only the chunks holding a distinctive term or among the candidates are ranked; without, every match is."""
        # The tsqueries first, in a statement of their own, so that the planner plans for the values themselves (a
        # BitmapOr of the GIN and primary-key indexes), not for values computed inside the statement.
        terms = await conn.execute(sa.text(_TERMS_SQL), {"q": query.text, "t": table_name(ref), "n": TERM_MAX_ROWS})
        every, distinctive = terms.one()
        if not every:
            await conn.rollback()
            return []
        where, params = _filters(query)
        params.update(q=every, k=limit)
        match = "content_tsv @@ tsq.q"
        if candidates:
            match += " AND (content_tsv @@ CAST(:rare AS tsquery) OR langchain_id = ANY(CAST(:ids AS uuid[])))"
            params.update(rare=distinctive, ids=candidates)
        where = f"{where} AND {match}" if where else f"WHERE {match}"
        rows = await conn.execute(
            sa.text(
                "WITH tsq AS (SELECT CAST(:q AS tsquery) AS q) "
                f"SELECT {SELECT_COLUMNS}, {RANK} AS rank "
                f'FROM "{table_name(ref)}", tsq {where} ORDER BY rank DESC LIMIT :k'
            ),
            params,
        )
        hits = [_hit(r, float(r.rank)) for r in rows]
        await conn.rollback()
        return hits


# Two tsqueries as text, NULL where the query has no lexeme. "every": the query's lexemes (stemmed, stop words
# dropped) ORed, so that any term may match and more matches rank higher. "distinctive": those of them that the
# table's statistics (pg_stats.most_common_elems of content_tsv, kept by ANALYZE and autovacuum) put in at most :n
# chunks, and the query's rarest, ORed. A lexeme missing from the statistics is rarer than every one listed; a table
# never analysed has none, so every lexeme is distinctive there.
_TERMS_SQL = (
    f"SELECT NULLIF(replace(plainto_tsquery('{TS_CONFIG}', :q)::text, ' & ', ' | '), '') AS every, "
    "(SELECT string_agg(term, ' | ') FROM ("
    r"SELECT '''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''' AS term, freq, "
    "min(freq) OVER () AS rarest FROM ("
    "SELECT lexeme, coalesce(common.freq, 0) AS freq "
    f"FROM unnest(tsvector_to_array(to_tsvector('{TS_CONFIG}', :q))) AS lexeme "
    "LEFT JOIN (SELECT e.elem, e.freq FROM pg_stats AS s, "
    "unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS e(elem, freq) "
    "WHERE s.schemaname = current_schema() AND s.tablename = :t AND s.attname = 'content_tsv') AS common "
    "ON common.elem = lexeme) AS counted) AS ranked "
    "WHERE freq * (SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = to_regclass(:t)) <= :n "
    "OR freq = rarest) AS distinctive"
)


def _filters(query: SearchQuery) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if query.tags:
        clauses.append("tags && CAST(:tags AS text[])")
        params["tags"] = list(query.tags)
    if query.sources:
        clauses.append("source = ANY(CAST(:sources AS text[]))")
        params["sources"] = list(query.sources)
    if query.document_ids:
        clauses.append("document_id = ANY(CAST(:doc_ids AS text[]))")
        params["doc_ids"] = list(query.document_ids)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def _hit(row: Any, score: float, similarity: float | None = None) -> Hit:
    extra = row.langchain_metadata or {}
    if isinstance(extra, str):
        extra = json.loads(extra)
    metadata = {**extra, **{c: getattr(row, c) for c in META_COLUMNS}}
    metadata["tags"] = list(metadata.get("tags") or [])
    return Hit(str(row.langchain_id), row.content, score, metadata, similarity)


async def _insert(conn: AsyncConnection, table: str, chunks: Sequence[ChunkRecord]) -> None:
    statement = sa.text(
        f'INSERT INTO "{table}" (langchain_id, content, embedding, document_id, source, name, part, page, '
        "collection, tags, langchain_metadata) VALUES (CAST(:id AS uuid), :content, CAST(:embedding AS vector), "
        ":document_id, :source, :name, :part, :page, :collection, CAST(:tags AS text[]), CAST(:extra AS json)) "
        "ON CONFLICT (langchain_id) DO NOTHING"  # a chunk repeated verbatim in one document is stored once
    )
    for start in range(0, len(chunks), INSERT_BATCH):
        rows = []
        for chunk in chunks[start : start + INSERT_BATCH]:
            meta = chunk.metadata
            extra = {k: v for k, v in meta.items() if k not in META_COLUMNS}
            rows.append(
                {
                    "id": chunk.id,
                    "content": chunk.text,
                    "embedding": vector_literal(chunk.embedding),
                    "document_id": str(meta.get("document_id", "")),
                    "source": str(meta.get("source", "")),
                    "name": str(meta.get("name", "")),
                    "part": int(meta.get("part", 0)),
                    "page": meta.get("page"),
                    "collection": str(meta.get("collection", "")),
                    "tags": [str(t) for t in meta.get("tags") or []],
                    "extra": json.dumps(extra),
                }
            )
        await conn.execute(statement, rows)


def _create_table_sql(table: str, dimensions: int) -> str:
    # The layout of langchain-postgres' PGEngine.ainit_vectorstore_table (id/content/embedding columns, metadata
    # columns, a JSON column for the rest), with the full-text column generated by the database.
    return (
        f'CREATE TABLE "{table}" ('
        "langchain_id UUID PRIMARY KEY, "
        "content TEXT NOT NULL, "
        f"embedding vector({int(dimensions)}) NOT NULL, "
        "document_id TEXT NOT NULL, source TEXT NOT NULL, name TEXT NOT NULL, part INTEGER NOT NULL, "
        "page INTEGER, collection TEXT NOT NULL, tags TEXT[] NOT NULL DEFAULT '{}', "
        "langchain_metadata JSON, "
        f"content_tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('{TS_CONFIG}', content)) STORED)"
    )


def _create_pages_sql(pages: str, dimensions: int) -> str:
    return (
        f'CREATE TABLE "{pages}" (document_id TEXT PRIMARY KEY, embedding vector({int(dimensions)}) NOT NULL, '
        "chunks INTEGER NOT NULL)"
    )


def page_vectors_sql(table: str, pages: str, *, one: bool = False) -> str:
    """Fill ``pages`` from the chunks of ``table``: every document's, or (``one``) the document ``:d``'s."""
    where = "WHERE document_id = :d " if one else ""
    return (
        f'INSERT INTO "{pages}" (document_id, embedding, chunks) SELECT document_id, avg(embedding), count(*) '
        f'FROM "{table}" {where}GROUP BY document_id '
        "ON CONFLICT (document_id) DO UPDATE SET embedding = EXCLUDED.embedding, chunks = EXCLUDED.chunks"
    )


MAX_IDENTIFIER = 63  # PostgreSQL cuts longer names to this many bytes


def index_name(table: str, suffix: str) -> str:
    """``<table>_<suffix>`` where that fits PostgreSQL's 63 bytes. A table name can take 62 (a 40-character slug of
    repository and collection, plus its hash), and cut to 63 ``..._hnsw`` and ``..._tsv`` would be the same name,
    so a longer one is ``rag_ix_<hash of the table>_<suffix>`` instead."""
    name = f"{table}_{suffix}"
    if len(name.encode()) <= MAX_IDENTIFIER:
        return name
    return f"rag_ix_{hashlib.sha256(table.encode()).hexdigest()[:24]}_{suffix}"


def _index_sql(table: str) -> list[str]:
    return [
        f'CREATE INDEX "{index_name(table, "hnsw")}" ON "{table}" USING hnsw (embedding vector_cosine_ops) '
        "WITH (m = 16, ef_construction = 64)",
        f'CREATE INDEX "{index_name(table, "tsv")}" ON "{table}" USING gin (content_tsv)',
        f'CREATE INDEX "{index_name(table, "tags")}" ON "{table}" USING gin (tags)',
        f'CREATE INDEX "{index_name(table, "doc")}" ON "{table}" (document_id)',
    ]

"""The pgvector store's page vectors against the platform's embedded PostgreSQL: kept with the chunks in the same
transaction, dropped with the document and the collection, and for collections made before they were kept (or
chunks loaded around the store), averaged at query time or filled in by ``ensure_collection``."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from backend.rag.vectorstores.base import ChunkRecord, CollectionRef
from backend.rag.vectorstores.pgvector import PgVectorStore, pages_table_name
from tests.support import LisaServer

QUERY = [1.0, 0.0, 0.0, 0.0]


def chunk(document_id: str, part: int, vector: list[float]) -> ChunkRecord:
    return ChunkRecord(f"{document_id} part {part}", vector, {"document_id": document_id, "part": part, "source": "s"})


@pytest.fixture
async def store(lisa: LisaServer) -> AsyncIterator[PgVectorStore]:
    opened = PgVectorStore(lisa.database_url)
    yield opened
    await opened.close()


@pytest.fixture
async def ref(store: PgVectorStore) -> AsyncIterator[CollectionRef]:
    made = CollectionRef("pages-test", f"c{uuid.uuid4().hex[:8]}", 4)
    await store.ensure_collection(made)
    yield made
    await store.drop_collection(made)


async def stored_pages(store: PgVectorStore, ref: CollectionRef) -> dict[str, int]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.text(f'SELECT document_id, chunks FROM "{pages_table_name(ref)}"'))
        return {r.document_id: r.chunks for r in rows}


async def test_page_vectors_follow_every_write_of_a_document(store: PgVectorStore, ref: CollectionRef) -> None:
    await store.replace_document(ref, "d1", [chunk("d1", 0, [1, 0, 0, 0]), chunk("d1", 1, [0, 1, 0, 0])])
    await store.replace_document(ref, "d2", [chunk("d2", 0, [0, 0, 1, 0])])
    assert await stored_pages(store, ref) == {"d1": 2, "d2": 1}
    sims = await store.page_similarity(ref, QUERY, ["d1", "d2", "unknown"])
    # the cosine to each document's mean chunk embedding, and how many chunks that mean is over
    assert sims == {"d1": (pytest.approx(1 / math.sqrt(2)), 2), "d2": (pytest.approx(0.0), 1)}
    # replaced: the page vector is the new chunks' mean, not a mix with the old ones
    await store.replace_document(ref, "d1", [chunk("d1", 0, [0, 0, 0, 1])])
    assert (await store.page_similarity(ref, QUERY, ["d1"]))["d1"] == (pytest.approx(0.0), 1)
    assert await stored_pages(store, ref) == {"d1": 1, "d2": 1}
    # emptied, then deleted: no page vector left behind
    await store.replace_document(ref, "d2", [])
    assert await store.delete_document(ref, "d1") == 1
    assert await stored_pages(store, ref) == {}
    assert await store.page_similarity(ref, QUERY, ["d1", "d2"]) == {}


async def test_chunks_without_a_stored_page_vector_are_averaged_at_query_time(
    store: PgVectorStore, ref: CollectionRef, lisa: LisaServer
) -> None:
    await store.replace_document(ref, "d1", [chunk("d1", 0, [1, 0, 0, 0]), chunk("d1", 1, [0, 1, 0, 0])])
    async with store.engine.begin() as conn:  # as after a bulk load, or in a collection older than page vectors
        await conn.execute(sa.text(f'DROP TABLE "{pages_table_name(ref)}"'))
    fresh = PgVectorStore(lisa.database_url)  # a new process: nothing cached about the missing table
    try:
        assert await fresh.page_similarity(ref, QUERY, ["d1"]) == {"d1": (pytest.approx(1 / math.sqrt(2)), 2)}
        await fresh.ensure_collection(ref)  # recreates the table and fills it from the chunks already stored
        assert await stored_pages(fresh, ref) == {"d1": 2}
        assert await fresh.page_similarity(ref, QUERY, ["d1"]) == {"d1": (pytest.approx(1 / math.sqrt(2)), 2)}
        with pytest.raises(ValueError, match="dimensions"):
            await fresh.page_similarity(ref, [1.0, 0.0], ["d1"])
    finally:
        await fresh.close()


async def test_dropping_the_collection_drops_its_page_vectors(store: PgVectorStore) -> None:
    ref = CollectionRef("pages-test", f"c{uuid.uuid4().hex[:8]}", 4)
    await store.ensure_collection(ref)
    await store.replace_document(ref, "d1", [chunk("d1", 0, [1, 0, 0, 0])])
    await store.drop_collection(ref)
    async with store.engine.connect() as conn:
        left = await conn.scalar(sa.text("SELECT to_regclass(:t)"), {"t": f"public.{pages_table_name(ref)}"})
    assert left is None
    assert await store.page_similarity(ref, QUERY, ["d1"]) == {}

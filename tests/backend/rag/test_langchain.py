"""LangChain on top of what LISA ingested: langchain-postgres' PGVectorStore over a collection's table, with
embeddings from LISA's own /v1/embeddings (langchain-openai), and LISA's retriever."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from langchain_openai import OpenAIEmbeddings
from pydantic import SecretStr

from backend.rag.embedder import Embedder, LisaEmbeddings
from backend.rag.vectorstores import CollectionRef
from backend.rag.vectorstores.pgvector import PgVectorStore
from tests.backend.rag.helpers import fresh_repository, ingest
from tests.support import LisaServer

REPO = "rag-langchain"


@pytest.fixture(scope="module")
def repo(admin: httpx.Client) -> Iterator[str]:
    fresh_repository(admin, REPO)
    job = ingest(
        admin,
        REPO,
        {
            "locks.txt": b"Advisory locks let applications coordinate with lock ids of their own choosing.",
            "toast.txt": b"Large column values are compressed and moved out of line into TOAST storage.",
        },
        tags="internals",
    )
    assert job["status"] == "completed"
    yield REPO
    admin.delete(f"/api/repositories/{REPO}")


async def test_langchain_postgres_store_reads_lisa_collections(repo: str, lisa: LisaServer) -> None:
    embeddings = OpenAIEmbeddings(
        model="minilm-l6-v2",
        base_url=lisa.url + "/v1",
        api_key=SecretStr(lisa.token),  # type: ignore[call-arg]
        check_embedding_ctx_length=False,
    )
    store = PgVectorStore(lisa.database_url)
    try:
        lc = await store.langchain(CollectionRef(repo, "default", 384), embeddings)
        docs = await lc.asimilarity_search("how are very big values stored", k=1)
        assert docs[0].metadata["name"] == "toast.txt" and docs[0].metadata["tags"] == ["internals"]
        assert "TOAST" in docs[0].page_content
        retrieved = await lc.as_retriever(search_kwargs={"k": 2}).ainvoke("application-defined locks")
        assert retrieved[0].metadata["name"] == "locks.txt"
        filtered = await lc.asimilarity_search("storage", k=2, filter={"name": {"$eq": "locks.txt"}})
        assert [d.metadata["name"] for d in filtered] == ["locks.txt"]
    finally:
        await store.close()


def test_lisa_embeddings_refuse_sync_calls_clearly() -> None:
    lisa_embeddings = LisaEmbeddings(Embedder.__new__(Embedder), "m")
    with pytest.raises(NotImplementedError, match="async"):
        lisa_embeddings.embed_query("x")
    with pytest.raises(NotImplementedError, match="async"):
        lisa_embeddings.embed_documents(["x"])

"""The OpenSearch vector store against a real osmem-server process, plus its pure query builders.

osmem-server speaks the OpenSearch REST API (index mappings, bulk, delete_by_query, BM25 search) but has no k-NN:
k-NN is covered here only by the shape of the query body and by the clear error the store raises when a server
cannot run it. It is verified for real only against an Amazon OpenSearch domain (see docs/rag-opensearch.md).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from osmem_server import resolve_binary

from backend.rag.vectorstores import StoreConfig, open_store
from backend.rag.vectorstores.base import ChunkRecord, CollectionRef, Hit, SearchQuery, fuse
from backend.rag.vectorstores.opensearch import (
    KnnNotSupportedError,
    OpenSearchStore,
    OpenSearchStoreError,
    cosine_from_knn_score,
    filters,
    index_name,
    knn_query,
    match_query,
    parse_config,
    search_body,
)
from tests.backend.rag.helpers import FINAL
from tests.support import Proc, free_port, start_process

DIM = 4


@pytest.fixture(scope="module")
def osmem(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A real osmem-server on a free port; it also exits if this test process dies."""
    port = free_port()
    argv = [
        resolve_binary(),
        "--addr",
        f"127.0.0.1:{port}",
        "--no-stdin-watch",
        "--no-ja",
        "--parent-pid",
        str(os.getpid()),
    ]
    log = tmp_path_factory.mktemp("osmem") / f"osmem-{port}.log"
    proc = start_process(argv, port=port, log=log, health="/_cluster/health", deadline=60)
    yield proc
    proc.stop()


@pytest.fixture
async def store(osmem: Proc) -> AsyncIterator[OpenSearchStore]:
    opened = open_store(StoreConfig("opensearch", {"endpoint": osmem.url, "index_prefix": "LisaTest"}))
    assert isinstance(opened, OpenSearchStore)
    yield opened
    await opened.close()


@pytest.fixture
def ref() -> CollectionRef:
    return CollectionRef("repo-1", f"Docs {uuid.uuid4().hex[:8]}", DIM)


def chunk(document_id: str, part: int, text: str, **meta: Any) -> ChunkRecord:
    vector = [0.0] * DIM
    vector[part % DIM] = 1.0
    return ChunkRecord(
        text, vector, {"document_id": document_id, "part": part, "source": f"s3://b/{document_id}", **meta}
    )


async def stored_ids(store: OpenSearchStore, ref: CollectionRef) -> list[str]:
    result = await store.client.search(index=store.index(ref), body={"size": 1000, "query": {"match_all": {}}})
    return sorted(hit["_id"] for hit in result["hits"]["hits"])


def text_query(text: str, **kw: Any) -> SearchQuery:
    return SearchQuery(vector=[1.0, 0.0, 0.0, 0.0], text=text, hybrid_weight=1.0, **kw)


# --- against the real server -----------------------------------------------------------------------------------


async def test_ensure_collection_creates_index_with_mapping(store: OpenSearchStore, ref: CollectionRef) -> None:
    await store.ensure_collection(ref)
    index = store.index(ref)
    assert index == f"lisatest-{ref.key}" and index == index.lower()

    props = (await store.client.indices.get_mapping(index=index))[index]["mappings"]["properties"]
    assert props["embedding"]["type"] == "knn_vector"
    assert props["embedding"]["dimension"] == DIM
    assert props["embedding"]["method"]["name"] == "hnsw"
    assert props["embedding"]["method"]["space_type"] == "cosinesimil"
    assert props["embedding"]["method"]["engine"] in ("lucene", "faiss")
    assert props["text"] == {"type": "text", "analyzer": "english"}
    for name in ("document_id", "source", "name", "collection", "tags"):
        assert props[name]["type"] == "keyword", name
    assert props["part"]["type"] == props["page"]["type"] == "integer"
    assert props["metadata"]["type"] == "object" and props["metadata"]["enabled"] is False

    settings = (await store.client.indices.get_settings(index=index))[index]["settings"]["index"]
    assert str(settings["knn"]).lower() == "true"


async def test_ensure_collection_is_idempotent_and_keeps_chunks(store: OpenSearchStore, ref: CollectionRef) -> None:
    await store.ensure_collection(ref)
    await store.replace_document(ref, "d1", [chunk("d1", 0, "alpha")])
    await store.ensure_collection(ref)
    await store.ensure_collection(ref)
    assert await store.count(ref) == 1
    assert await store.client.indices.exists(index=store.index(ref))


async def test_ensure_collection_refuses_an_index_of_another_dimension(
    store: OpenSearchStore, ref: CollectionRef
) -> None:
    await store.ensure_collection(ref)
    wider = CollectionRef(ref.repository_id, ref.collection_id, DIM * 2)
    assert store.index(wider) == store.index(ref)
    with pytest.raises(OpenSearchStoreError, match=f"dimension {DIM * 2}"):
        await store.ensure_collection(wider)


async def test_replace_document_then_count(store: OpenSearchStore, ref: CollectionRef) -> None:
    await store.ensure_collection(ref)
    chunks = [chunk("d1", i, f"text {i}") for i in range(3)]
    await store.replace_document(ref, "d1", chunks)
    await store.replace_document(ref, "d2", [chunk("d2", 0, "other")])

    assert await store.count(ref) == 4
    assert await store.count(ref, "d1") == 3
    assert await store.count(ref, "d2") == 1
    assert await store.count(ref, "missing") == 0
    assert await stored_ids(store, ref) == sorted([c.id for c in chunks] + [chunk("d2", 0, "other").id])


async def test_page_similarity_is_the_cosine_to_the_mean_of_a_documents_chunks(
    store: OpenSearchStore, ref: CollectionRef
) -> None:
    await store.ensure_collection(ref)
    await store.replace_document(ref, "d1", [chunk("d1", i, f"text {i}") for i in range(2)])  # axes 0 and 1
    await store.replace_document(ref, "d2", [chunk("d2", 2, "other")])  # axis 2
    await store.replace_document(ref, "d3", [chunk("d3", 0, "not asked for")])
    sims = await store.page_similarity(ref, [1.0, 0.0, 0.0, 0.0], ["d1", "d2", "missing"])
    # d1's mean is (0.5, 0.5, 0, 0): cosine 1/sqrt(2); d2 is orthogonal; a document not asked for or not stored
    # is left out
    assert sims.keys() == {"d1", "d2"}
    assert sims["d1"] == (pytest.approx(0.5**0.5), 2) and sims["d2"] == (pytest.approx(0.0), 1)
    assert await store.page_similarity(ref, [1.0, 0.0, 0.0, 0.0], []) == {}
    with pytest.raises(ValueError, match="dimensions"):
        await store.page_similarity(ref, [1.0, 0.0], ["d1"])


async def stored_page(store: OpenSearchStore, ref: CollectionRef, document_id: str) -> dict[str, Any] | None:
    doc = await store.client.get(index=store.pages_index(ref), id=document_id, ignore=404)
    return doc.get("_source") if doc.get("found") else None


async def test_page_vectors_are_kept_in_their_own_index_with_every_write(
    store: OpenSearchStore, ref: CollectionRef
) -> None:
    await store.ensure_collection(ref)
    assert store.pages_index(ref) == f"{store.index(ref)}.pages"
    props = (await store.client.indices.get_mapping(index=store.pages_index(ref)))[store.pages_index(ref)]
    assert props["mappings"]["properties"]["embedding"]["dimension"] == DIM
    await store.replace_document(ref, "d1", [chunk("d1", i, f"text {i}") for i in range(2)])
    assert await stored_page(store, ref, "d1") == {"embedding": [0.5, 0.5, 0.0, 0.0], "chunks": 2}
    # the search reads the stored page, not the chunks: with the chunks gone behind the store's back, it still answers
    await store.client.delete_by_query(index=store.index(ref), body={"query": {"match_all": {}}}, refresh=True)
    assert await store.page_similarity(ref, [1.0, 0.0, 0.0, 0.0], ["d1"]) == {"d1": (pytest.approx(0.5**0.5), 2)}
    # rewritten: the new chunks' mean; emptied or deleted: no page left behind
    await store.replace_document(ref, "d1", [chunk("d1", 3, "moved")])
    assert await stored_page(store, ref, "d1") == {"embedding": [0.0, 0.0, 0.0, 1.0], "chunks": 1}
    await store.replace_document(ref, "d2", [chunk("d2", 0, "x")])
    await store.replace_document(ref, "d2", [])
    assert await stored_page(store, ref, "d2") is None
    await store.delete_document(ref, "d1")
    assert await stored_page(store, ref, "d1") is None
    assert await store.page_similarity(ref, [1.0, 0.0, 0.0, 0.0], ["d1", "d2"]) == {}
    await store.drop_collection(ref)
    assert not await store.client.indices.exists(index=store.pages_index(ref))


async def test_a_collection_older_than_page_vectors_averages_its_chunks(
    store: OpenSearchStore, ref: CollectionRef
) -> None:
    await store.ensure_collection(ref)
    await store.replace_document(ref, "d1", [chunk("d1", i, f"text {i}") for i in range(2)])
    await store.client.indices.delete(index=store.pages_index(ref))  # as a collection made before page vectors
    assert await store.page_similarity(ref, [1.0, 0.0, 0.0, 0.0], ["d1"]) == {"d1": (pytest.approx(0.5**0.5), 2)}
    await store.ensure_collection(ref)  # the page index comes back, empty: d1 is still averaged from its chunks
    assert await stored_page(store, ref, "d1") is None
    assert await store.page_similarity(ref, [1.0, 0.0, 0.0, 0.0], ["d1"]) == {"d1": (pytest.approx(0.5**0.5), 2)}
    await store.replace_document(ref, "d2", [chunk("d2", 2, "new")])  # written since: stored
    assert await stored_page(store, ref, "d2") == {"embedding": [0.0, 0.0, 1.0, 0.0], "chunks": 1}


async def test_replace_with_fewer_chunks_removes_the_old_ones(store: OpenSearchStore, ref: CollectionRef) -> None:
    await store.ensure_collection(ref)
    await store.replace_document(ref, "d1", [chunk("d1", i, f"first version {i}") for i in range(3)])
    await store.replace_document(ref, "keep", [chunk("keep", 0, "untouched")])

    newer = [chunk("d1", 0, "first version 0"), chunk("d1", 1, "second version 1")]
    await store.replace_document(ref, "d1", newer)

    assert await store.count(ref, "d1") == 2
    assert await store.count(ref, "keep") == 1
    assert await stored_ids(store, ref) == sorted([c.id for c in newer] + [chunk("keep", 0, "untouched").id])


async def test_replace_with_the_same_chunks_twice_makes_no_duplicates(
    store: OpenSearchStore, ref: CollectionRef
) -> None:
    chunks = [chunk("d1", i, f"same {i}") for i in range(3)]
    await store.replace_document(ref, "d1", chunks)  # creates the index itself when missing
    await store.replace_document(ref, "d1", chunks)
    assert await store.count(ref) == 3
    assert await stored_ids(store, ref) == sorted(c.id for c in chunks)


async def test_replace_with_no_chunks_empties_the_document(store: OpenSearchStore, ref: CollectionRef) -> None:
    await store.replace_document(ref, "d1", [chunk("d1", 0, "gone soon"), chunk("d1", 1, "also gone")])
    await store.replace_document(ref, "d1", [])
    assert await store.count(ref, "d1") == 0


async def test_replace_rejects_a_wrong_dimension_and_writes_nothing(store: OpenSearchStore, ref: CollectionRef) -> None:
    await store.ensure_collection(ref)
    bad = ChunkRecord("short vector", [1.0, 0.0], {"document_id": "d1", "part": 0})
    with pytest.raises(ValueError, match="2 dimensions"):
        await store.replace_document(ref, "d1", [chunk("d1", 0, "fine"), bad])
    assert await store.count(ref) == 0


async def test_replace_reports_chunks_the_server_rejects(store: OpenSearchStore, ref: CollectionRef) -> None:
    bad = chunk("d1", 1, "bad page", page="twelve")
    with pytest.raises(OpenSearchStoreError, match=f"failed for 1 chunk.*{bad.id}"):
        await store.replace_document(ref, "d1", [chunk("d1", 0, "good"), bad])


async def test_delete_document(store: OpenSearchStore, ref: CollectionRef) -> None:
    await store.replace_document(ref, "d1", [chunk("d1", i, f"t {i}") for i in range(3)])
    await store.replace_document(ref, "d2", [chunk("d2", 0, "stays")])

    assert await store.delete_document(ref, "d1") == 3
    assert await store.count(ref, "d1") == 0
    assert await store.count(ref) == 1
    assert await store.delete_document(ref, "d1") == 0


async def test_drop_collection(store: OpenSearchStore, ref: CollectionRef) -> None:
    await store.replace_document(ref, "d1", [chunk("d1", 0, "x")])
    await store.drop_collection(ref)
    assert not await store.client.indices.exists(index=store.index(ref))
    await store.drop_collection(ref)  # idempotent
    assert await store.count(ref) == 0
    assert await store.delete_document(ref, "d1") == 0
    assert await store.search(ref, text_query("x")) == []


async def _corpus(store: OpenSearchStore, ref: CollectionRef) -> dict[str, ChunkRecord]:
    chunks = {
        "cats": chunk("pets", 0, "Cats sleep most of the day and purr.", tags=["animals", "home"], page=1),
        "dogs": chunk("pets", 1, "Dogs are running in the park and barking loudly.", tags=["animals"], page=2),
        "tax": chunk("finance", 0, "Quarterly tax filing deadlines for small businesses.", tags=["money"]),
        "park": chunk(
            "city", 0, "The city park opens at dawn; running paths circle the lake.", tags=["places"], lang="en"
        ),
    }
    await store.replace_document(ref, "pets", [chunks["cats"], chunks["dogs"]])
    await store.replace_document(ref, "finance", [chunks["tax"]])
    await store.replace_document(ref, "city", [chunks["park"]])
    return chunks


async def test_full_text_search_ranks_the_right_chunk_first(store: OpenSearchStore, ref: CollectionRef) -> None:
    chunks = await _corpus(store, ref)

    hits = await store.search(ref, text_query("barking dog", top_k=3))
    assert hits[0].id == chunks["dogs"].id
    assert hits[0].text == chunks["dogs"].text
    assert all(h.id != chunks["tax"].id for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    meta = hits[0].metadata
    assert meta["document_id"] == "pets" and meta["part"] == 1 and meta["page"] == 2
    assert meta["source"] == "s3://b/pets" and meta["tags"] == ["animals"]
    assert "embedding" not in meta

    park = await store.search(ref, text_query("lake", top_k=1))
    assert [h.id for h in park] == [chunks["park"].id]
    assert park[0].metadata["lang"] == "en"  # extra metadata comes back

    assert len(await store.search(ref, text_query("running", top_k=1))) == 1
    assert await store.search(ref, text_query("zeppelin")) == []


async def test_full_text_search_filters(store: OpenSearchStore, ref: CollectionRef) -> None:
    chunks = await _corpus(store, ref)

    by_tag = await store.search(ref, text_query("running", tags=["places"]))
    assert [h.id for h in by_tag] == [chunks["park"].id]

    by_any_tag = await store.search(ref, text_query("cats running", tags=["home", "places"]))
    assert {h.id for h in by_any_tag} == {chunks["cats"].id, chunks["park"].id}

    by_source = await store.search(ref, text_query("running", sources=["s3://b/pets"]))
    assert [h.id for h in by_source] == [chunks["dogs"].id]

    by_document = await store.search(ref, text_query("running", document_ids=["city"]))
    assert [h.id for h in by_document] == [chunks["park"].id]

    assert await store.search(ref, text_query("running", tags=["money"])) == []
    assert await store.search(ref, text_query("running", tags=["animals"], sources=["s3://b/city"])) == []


async def test_knn_search_on_a_server_without_knn_raises_a_clear_error(
    store: OpenSearchStore, ref: CollectionRef
) -> None:
    """osmem-server has no k-NN: this proves the store says so, not that k-NN works."""
    await _corpus(store, ref)
    for weight in (0.0, 0.5):
        query = SearchQuery(vector=[1.0, 0.0, 0.0, 0.0], text="dogs", hybrid_weight=weight)
        with pytest.raises(KnnNotSupportedError, match="cannot run k-NN"):
            await store.search(ref, query)


async def test_search_validates_its_query(store: OpenSearchStore, ref: CollectionRef) -> None:
    await store.ensure_collection(ref)
    with pytest.raises(ValueError, match="top_k"):
        await store.search(ref, text_query("x", top_k=0))
    with pytest.raises(ValueError, match="top_k"):
        await store.search(ref, text_query("x", top_k=100_000))
    with pytest.raises(ValueError, match="hybrid_weight"):
        await store.search(ref, SearchQuery(vector=[0.0] * DIM, text="x", hybrid_weight=1.5))
    with pytest.raises(ValueError, match="3 dimensions"):
        await store.search(ref, SearchQuery(vector=[1.0, 0.0, 0.0], text="x"))


# --- pure query builders ----------------------------------------------------------------------------------------


def test_knn_query_without_filters() -> None:
    body = knn_query(SearchQuery(vector=[0.1, 0.2, 0.3, 0.4], text="ignored"), k=7)
    assert body == {"knn": {"embedding": {"vector": [0.1, 0.2, 0.3, 0.4], "k": 7}}}


def test_knn_query_puts_filters_inside_the_knn_clause() -> None:
    query = SearchQuery(vector=[1.0, 0.0], text="", tags=["a", "b"], sources=["s"], document_ids=["d"])
    body = knn_query(query, k=20)
    assert list(body) == ["knn"]
    clause = body["knn"]["embedding"]
    assert clause["k"] == 20 and clause["vector"] == [1.0, 0.0]
    assert clause["filter"] == {
        "bool": {
            "filter": [
                {"terms": {"tags": ["a", "b"]}},
                {"terms": {"source": ["s"]}},
                {"terms": {"document_id": ["d"]}},
            ]
        }
    }


def test_match_query_and_filters() -> None:
    plain = SearchQuery(vector=[], text="hello world")
    assert filters(plain) == []
    assert match_query(plain) == {"match": {"text": {"query": "hello world", "operator": "or"}}}

    tagged = SearchQuery(vector=[], text="hello", tags=["t"])
    assert filters(tagged) == [{"terms": {"tags": ["t"]}}]
    assert match_query(tagged) == {
        "bool": {
            "must": [{"match": {"text": {"query": "hello", "operator": "or"}}}],
            "filter": [{"terms": {"tags": ["t"]}}],
        }
    }


def test_search_body_never_returns_embeddings() -> None:
    body = search_body({"match_all": {}}, 9)
    assert body["size"] == 9 and body["_source"] == {"excludes": ["embedding"]}


def test_knn_score_becomes_cosine_similarity() -> None:
    assert cosine_from_knn_score(1.0) == pytest.approx(1.0)
    assert cosine_from_knn_score(0.5) == pytest.approx(0.0)
    assert cosine_from_knn_score(0.0) == pytest.approx(-1.0)


def test_fuse_blends_normalised_scores() -> None:
    dense = [Hit("a", "A", 0.9, {}), Hit("b", "B", 0.5, {}), Hit("c", "C", 0.1, {})]
    sparse = [Hit("c", "C", 12.0, {}), Hit("d", "D", 3.0, {})]

    only_dense = fuse(dense, sparse, 0.0, 3)
    assert [h.id for h in only_dense][:3] == ["a", "b", "c"]

    blended = fuse(dense, sparse, 0.5, 4)
    scores = {h.id: h.score for h in blended}
    assert scores["a"] == pytest.approx(0.5)  # dense 1.0, absent from full-text
    assert scores["c"] == pytest.approx(0.5)  # dense 0.0, full-text 1.0
    assert scores["b"] == pytest.approx(0.25)
    assert scores["d"] == pytest.approx(0.0)
    assert [h.id for h in blended][-1] == "d"

    assert [h.id for h in fuse(dense, sparse, 0.9, 1)] == ["c"]
    assert fuse([], [], 0.5, 5) == []


# --- configuration ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "secret", "message"),
    [
        ({}, None, "'endpoint'.*required"),
        ({"endpoint": "  "}, None, "'endpoint'.*required"),
        ({"endpoint": "ftp://search.example"}, None, "not an http"),
        ({"endpoint": "search.example:9200"}, None, "not an http"),
        ({"endpoint": "http://h:9200", "auth": "kerberos"}, None, "auth 'kerberos' is not one of"),
        ({"endpoint": "http://h:9200", "auth": "basic", "username": "u"}, None, "password"),
        ({"endpoint": "http://h:9200", "auth": "basic"}, "pw", "username"),
        ({"endpoint": "http://h:9200", "index_prefix": "-bad"}, None, "index_prefix"),
        ({"endpoint": "http://h:9200", "index_prefix": "a b"}, None, "index_prefix"),
        ({"endpoint": "http://h:9200", "engine": "nmslib"}, None, "engine"),
        ({"endpoint": "https://h", "auth": "aws_sigv4", "region": "eu-west-1", "service": "aoss"}, None, "aoss"),
    ],
)
def test_bad_config_raises_value_error(options: dict[str, Any], secret: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(StoreConfig("opensearch", options, secret))


def test_basic_auth_config_keeps_the_password_out_of_repr() -> None:
    options = parse_config(
        StoreConfig("opensearch", {"endpoint": "https://h:9200", "auth": "basic", "username": "u"}, "s3cret")
    )
    assert options.http_auth == ("u", "s3cret")
    assert options.index_prefix == "lisa" and options.engine == "lucene"
    assert "s3cret" not in repr(options)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    return monkeypatch


def test_sigv4_config_signs_requests(aws_env: pytest.MonkeyPatch) -> None:
    options = parse_config(
        StoreConfig(
            "opensearch",
            {"endpoint": "https://search-x.eu-west-1.es.amazonaws.com", "auth": "aws_sigv4", "region": "eu-west-1"},
        )
    )
    headers = options.http_auth("GET", "https://search-x.eu-west-1.es.amazonaws.com/_cluster/health", None, {})
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/es/aws4_request" in headers["Authorization"]
    assert "wJalr" not in repr(options)


def test_sigv4_config_needs_a_region(aws_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="region"):
        parse_config(StoreConfig("opensearch", {"endpoint": "https://h", "auth": "aws_sigv4"}))
    aws_env.setenv("AWS_REGION", "us-east-2")
    assert parse_config(StoreConfig("opensearch", {"endpoint": "https://h", "auth": "aws_sigv4"})).http_auth


def test_index_names_use_the_prefix_and_the_collection_key() -> None:
    ref = CollectionRef("Repo", "My Docs", 8)
    assert index_name("lisa", ref) == f"lisa-{ref.key}"
    assert index_name("lisa", ref) != index_name("lisa", CollectionRef("Repo", "Other", 8))


# --- through the platform's API --------------------------------------------------------------------------------


def test_an_opensearch_repository_ingests_searches_and_deletes_through_the_api(
    admin: httpx.Client, osmem: Proc
) -> None:
    repo = "rag-opensearch"
    admin.delete(f"/api/repositories/{repo}")
    body = {"id": repo, "type": "opensearch", "opensearch": {"endpoint": osmem.url, "index_prefix": "lisa-api"}}
    created = admin.post("/api/repositories", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["options"]["endpoint"].startswith("http://127.0.0.1")
    files = [
        (
            "files",
            ("wal.txt", b"Write-ahead logging records every change before data pages are written.", "text/plain"),
        ),
        ("files", ("acl.txt", b"Row level security policies restrict which rows a role can select.", "text/plain")),
    ]
    job = admin.post(f"/api/repositories/{repo}/collections/default/documents", files=files).json()
    deadline = time.monotonic() + 120
    while (job := admin.get(f"/api/repositories/{repo}/jobs/{job['id']}").json())["status"] not in FINAL:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert job["status"] == "completed" and job["chunks_done"] == 2, job
    params: dict[str, str | float] = {"query": "which policies limit rows for a role", "hybrid_weight": 1.0, "top_k": 2}
    hits = admin.get(f"/api/repositories/{repo}/search", params=params).json()["results"]
    assert hits[0]["name"] == "acl.txt" and hits[0]["collection_id"] == "default"
    # osmem-server has no k-NN: vector search reports the store's reason instead of pretending.
    knn = admin.get(f"/api/repositories/{repo}/search", params={"query": "rows", "hybrid_weight": 0.0})
    assert knn.status_code == 502 and "knn" in knn.json()["detail"].lower()
    doc = next(d for d in admin.get(f"/api/repositories/{repo}/documents").json()["data"] if d["name"] == "acl.txt")
    assert admin.delete(f"/api/repositories/{repo}/documents/{doc['id']}").status_code == 204
    both: dict[str, str | float] = {
        **params,
        "query": "which policies limit rows for a role, and when are pages written",
        "top_k": 5,
    }
    after = admin.get(f"/api/repositories/{repo}/search", params=both).json()["results"]
    assert [h["name"] for h in after] == ["wal.txt"]
    assert admin.delete(f"/api/repositories/{repo}").status_code == 204
    index = f"lisa-api-{CollectionRef(repo, 'default', 384).key}"
    assert httpx.head(f"{osmem.url}/{index}").status_code == 404  # the repository's index went with it

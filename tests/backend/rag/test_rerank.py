"""Search with a TEI-compatible reranker (the local MiniLM server's /rerank) behind a second backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend.rag.helpers import fresh_repository, ingest, search
from tests.support import LisaServer, start_lisa

REPO = "rag-rerank"


@pytest.fixture(scope="module")
def reranking(lisa: LisaServer, admin: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LisaServer]:
    embedding_v1 = admin.get("/api/models/minilm-l6-v2").json()["base_url"]
    fresh_repository(admin, REPO)
    job = ingest(
        admin,
        REPO,
        {
            "cats.txt": b"The cat slept on the warm windowsill all afternoon.",
            "tax.txt": b"Quarterly tax filings are due at the end of the month.",
            "dogs.txt": b"Dogs chase the postman every morning.",
        },
    )
    assert job["status"] == "completed"
    root: Path = tmp_path_factory.mktemp("rerank")
    server = start_lisa(
        root / "data",
        local_models=False,
        database_url=lisa.database_url,
        token=lisa.token,
        env={
            "LISA_BOOTSTRAP_ADMIN": "false",
            "LISA_RAG_WORKER": "false",
            "LISA_RAG_RERANKER_URL": embedding_v1.removesuffix("/v1"),
        },
    )
    yield server
    server.proc.stop()
    admin.delete(f"/api/repositories/{REPO}")


def test_reranked_results_carry_rerank_scores_in_order(reranking: LisaServer) -> None:
    with reranking.client() as client:
        hits = search(client, REPO, "where did the cat nap", top_k=3)
        assert hits[0]["name"] == "cats.txt"
        scores = [h["rerank_score"] for h in hits]
        assert all(isinstance(s, float) for s in scores) and scores == sorted(scores, reverse=True)
        plain = search(client, REPO, "where did the cat nap", top_k=3, rerank=False)
        assert all(h["rerank_score"] is None for h in plain)
        resp = client.get(f"/api/repositories/{REPO}/search", params={"query": "cat", "rerank": True})
        assert resp.status_code == 200 and resp.json()["timings_ms"]["rerank"] > 0


def test_rerank_without_a_reranker_is_a_clear_400(admin: httpx.Client, reranking: LisaServer) -> None:
    resp = admin.get(f"/api/repositories/{REPO}/search", params={"query": "cat", "rerank": True})
    assert resp.status_code == 400 and "no reranker is configured" in resp.json()["detail"]


def test_rag_chat_meters_its_rerank_to_the_caller(admin: httpx.Client, reranking: LisaServer) -> None:
    token = admin.post("/api/tokens", json={"name": "rr", "username": "rerank-chatter", "groups": []}).json()["token"]
    with reranking.client(token) as client:
        body = {"model": "gemma3-270m", "messages": [{"role": "user", "content": "where did the cat nap"}],
                "max_tokens": 1, "rag": {"repositories": [REPO], "top_k": 2}}  # fmt: skip
        resp = client.post("/v1/chat/completions", json=body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["sources"][0]["rerank_score"] is not None
        deadline = time.monotonic() + 5
        models: set[str] = set()
        while time.monotonic() < deadline and not {"rag-reranker", "minilm-l6-v2"} <= models:
            time.sleep(0.2)
            models = {r["model"] for r in client.get("/api/usage/me").json()["rows"]}
        assert {"rag-reranker", "minilm-l6-v2", "gemma3-270m"} <= models

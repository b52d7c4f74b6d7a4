"""RAG in chat costs embedding calls: they happen only after the caller is admitted, and are metered to the caller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from backend.db.engine import asyncpg_dsn
from tests.backend.rag.helpers import fresh_repository, ingest
from tests.support import LisaServer, Proc, start_module

REPO = "rag-costs"
EMBED = "rag-cost-embed"
CHAT = "rag-cost-chat"
QUESTION = [{"role": "user", "content": "When does the on-call rotation change?"}]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """The embedding model's server: it records every request, so a test sees whether RAG called it."""
    proc = start_module("tests.servers.capture_server", tmp_path_factory.mktemp("embedder"), "--dimensions", "16")
    yield proc
    proc.stop()


def embedding_calls(embedder: Proc) -> list[dict[str, Any]]:
    return [r for r in httpx.get(embedder.url + "/_captured").json() if r["path"].endswith("/embeddings")]


@pytest.fixture(scope="module")
def repo(admin: httpx.Client, embedder: Proc, faulty_upstream: Proc) -> Iterator[str]:
    for body in (
        {"id": EMBED, "type": "embedding", "hosting": "internal", "base_url": embedder.url + "/v1", "streaming": False},
        {"id": CHAT, "type": "textgen", "hosting": "internal", "base_url": faulty_upstream.url + "/v1",
         "upstream_model": "ok"},
    ):  # fmt: skip
        admin.delete(f"/api/models/{body['id']}")
        assert admin.post("/api/models", json=body).status_code == 201
    fresh_repository(admin, REPO, embedding_model=EMBED)
    job = ingest(admin, REPO, {"oncall.txt": b"The on-call rotation changes every Tuesday at 09:00 UTC."})
    assert job["status"] == "completed", job
    yield REPO
    admin.delete(f"/api/repositories/{REPO}")


def rows_of(lisa: LisaServer, username: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(asyncpg_dsn(lisa.database_url))
        try:
            rows = await conn.fetch(
                "SELECT model, endpoint, prompt_tokens, completion_tokens, status FROM usage_records "
                "WHERE username = $1 ORDER BY created_at",
                username,
            )
            return [dict(r) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(read())


def user_with_limit(admin: httpx.Client, lisa: LisaServer, name: str, limits: dict[str, Any]) -> httpx.Client:
    token = admin.post("/api/tokens", json={"name": name, "username": name, "groups": []}).json()["token"]
    assert admin.put(f"/api/limits/user/{name}", json=limits).status_code == 200
    return lisa.client(token, timeout=60)


def rag_chat(client: httpx.Client, repo: str) -> httpx.Response:
    body = {"model": CHAT, "messages": QUESTION, "max_tokens": 4, "rag": {"repositories": [repo], "top_k": 1}}
    return client.post("/v1/chat/completions", json=body)


def test_a_caller_at_their_limit_triggers_no_embedding(
    admin: httpx.Client, lisa: LisaServer, embedder: Proc, repo: str
) -> None:
    with user_with_limit(admin, lisa, "rag-cost-limited", {"rpm": 1}) as user:
        plain = user.post("/v1/chat/completions", json={"model": CHAT, "messages": QUESTION})
        assert plain.status_code == 200, plain.text  # the one request of this minute
        httpx.delete(embedder.url + "/_captured")
        refused = rag_chat(user, repo)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1, refused.text
        time.sleep(0.5)  # the meter flushes every 0.1 s in tests
        assert embedding_calls(embedder) == []
        assert [r for r in rows_of(lisa, "rag-cost-limited") if r["model"] == EMBED] == []


def test_a_rag_chat_meters_its_embedding_to_the_caller_and_their_budget(
    admin: httpx.Client, lisa: LisaServer, embedder: Proc, repo: str
) -> None:
    limits = {"budget_tokens": 100_000, "budget_period": "day"}
    with user_with_limit(admin, lisa, "rag-cost-user", limits) as user:
        httpx.delete(embedder.url + "/_captured")
        resp = rag_chat(user, repo)
        assert resp.status_code == 200, resp.text
        assert [s["name"] for s in resp.json()["sources"]] == ["oncall.txt"]
        assert len(embedding_calls(embedder)) == 1  # the query, embedded once
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(rows := rows_of(lisa, "rag-cost-user")) < 2:
            time.sleep(0.2)
        embedding = [r for r in rows if r["model"] == EMBED]
        assert [(r["endpoint"], r["status"]) for r in embedding] == [("embeddings", 200)], rows
        assert embedding[0]["prompt_tokens"] > 0
        chat = [r for r in rows if r["model"] == CHAT]
        assert len(chat) == 1 and chat[0]["endpoint"] == "chat/completions"
        used = user.get("/api/limits/me").json()["buckets"][0]["budget_used"]
        assert used == resp.json()["usage"]["total_tokens"] + embedding[0]["prompt_tokens"]

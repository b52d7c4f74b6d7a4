"""Shared steps of the RAG API tests: make a repository, upload files, wait for a job, count stored chunks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx

from backend.db.engine import asyncpg_dsn
from backend.rag.vectorstores import CollectionRef
from backend.rag.vectorstores.pgvector import table_name

FINAL = ("completed", "failed", "cancelled")


def fresh_repository(client: httpx.Client, repository_id: str, **extra: Any) -> dict[str, Any]:
    client.delete(f"/api/repositories/{repository_id}")
    resp = client.post("/api/repositories", json={"id": repository_id, **extra})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def upload(
    client: httpx.Client,
    repository_id: str,
    files: dict[str, bytes],
    collection: str = "default",
    **form: str,
) -> httpx.Response:
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files.items()]
    return client.post(f"/api/repositories/{repository_id}/collections/{collection}/documents", files=parts, data=form)


def wait_job(client: httpx.Client, repository_id: str, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/api/repositories/{repository_id}/jobs/{job_id}").json()
        if job["status"] in FINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} did not finish: {job}"
        time.sleep(0.3)


def ingest(client: httpx.Client, repository_id: str, files: dict[str, bytes], **form: str) -> dict[str, Any]:
    resp = upload(client, repository_id, files, **form)
    assert resp.status_code == 202, resp.text
    return wait_job(client, repository_id, resp.json()["id"])


def search(client: httpx.Client, repository_id: str, query: str, **params: Any) -> list[dict[str, Any]]:
    resp = client.get(f"/api/repositories/{repository_id}/search", params={"query": query, **params})
    assert resp.status_code == 200, resp.text
    results: list[dict[str, Any]] = resp.json()["results"]
    return results


def documents(client: httpx.Client, repository_id: str) -> list[dict[str, Any]]:
    resp = client.get(f"/api/repositories/{repository_id}/documents", params={"limit": 500})
    assert resp.status_code == 200, resp.text
    data: list[dict[str, Any]] = resp.json()["data"]
    return data


def stored_chunks(database_url: str, repository_id: str, collection_id: str = "default") -> dict[str, int]:
    """Rows per document_id in the collection's chunk table, read straight from PostgreSQL."""
    table = table_name(CollectionRef(repository_id, collection_id, 0))

    async def read() -> dict[str, int]:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            rows = await conn.fetch(f'SELECT document_id, count(*) AS n FROM "{table}" GROUP BY document_id')
            return {r["document_id"]: int(r["n"]) for r in rows}
        finally:
            await conn.close()

    return asyncio.run(read())

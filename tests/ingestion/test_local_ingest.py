"""In-process ingestion next to a running platform (backend/rag/local_ingest.py): whatever the notebook's settings,
it leaves the server's ingestion workers alone."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from backend.db.engine import asyncpg_dsn
from ingestion import ingest
from tests.support import LisaServer

REPO = "local-ingest"


@pytest.fixture(scope="module")
def repo(admin: httpx.Client) -> Iterator[str]:
    admin.delete(f"/api/repositories/{REPO}")
    resp = admin.post("/api/repositories", json={"id": REPO})
    assert resp.status_code == 201, resp.text
    yield REPO
    admin.delete(f"/api/repositories/{REPO}")


def new_collection(admin: httpx.Client, repo: str) -> str:
    collection = "c-" + secrets.token_hex(4)
    resp = admin.post(f"/api/repositories/{repo}/collections", json={"id": collection})
    assert resp.status_code == 201, resp.text
    return collection


def live_workers(database_url: str) -> set[int]:
    """procrastinate's registered workers that sent a heartbeat lately (the servers', every 2 s)."""

    async def query() -> set[int]:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            sql = "SELECT id FROM procrastinate_workers WHERE last_heartbeat > now() - interval '5 seconds'"
            return {int(r["id"]) for r in await conn.fetch(sql)}
        finally:
            await conn.close()

    return asyncio.run(query())


def all_workers(database_url: str) -> set[int]:
    async def query() -> set[int]:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            return {int(r["id"]) for r in await conn.fetch("SELECT id FROM procrastinate_workers")}
        finally:
            await conn.close()

    return asyncio.run(query())


def test_a_short_stalled_timeout_in_a_notebook_never_prunes_the_servers_worker(
    lisa: LisaServer, admin: httpx.Client, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # procrastinate deletes, when a worker starts, every worker silent for longer than that worker's stalled timeout;
    # the server's heartbeat comes every 2 s, and a deleted worker stops taking jobs.
    monkeypatch.setenv("LISA_RAG_STALLED_SECONDS", "0.001")
    monkeypatch.delenv("LISA_RAG_INGEST_ROOTS", raising=False)
    servers = live_workers(lisa.database_url)
    assert servers, "the session's server runs an ingestion worker"
    collection = new_collection(admin, repo)
    here = tmp_path / "here"
    here.mkdir()
    (here / "vacuum.txt").write_text("VACUUM reclaims the storage of dead tuples after large deletes.")

    result = ingest(here, repo, collection, in_process=True, database_url=lisa.database_url, progress=False)

    assert result.ok and result.documents_done == 1
    assert servers <= all_workers(lisa.database_url)  # still registered
    upload = admin.post(
        f"/api/repositories/{repo}/collections/{collection}/documents",
        files={"files": ("later.txt", b"Checkpoints write dirty pages to disk at intervals.", "text/plain")},
    )
    assert upload.status_code == 202, upload.text
    job_url = f"/api/repositories/{repo}/jobs/{upload.json()['id']}"
    deadline = time.monotonic() + 90
    while (job := admin.get(job_url).json())["status"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"the server's worker no longer takes jobs: {job}"
        time.sleep(0.3)
    assert job["status"] == "completed" and job["documents_done"] == 1  # and still runs them

"""Ingestion jobs under stress: cancelling mid-way, and a backend killed mid-job that resumes after a restart."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend.rag.helpers import documents, fresh_repository, stored_chunks, upload, wait_job
from tests.support import LisaServer, start_lisa


def corpus(count: int, words: int = 400) -> dict[str, bytes]:
    """Distinct documents of a few chunks each (distinct, so none is skipped as a duplicate)."""
    return {
        f"doc-{n:04d}.txt": " ".join(f"topic{n} word{i} measurement{(n * 7 + i) % 97}" for i in range(words)).encode()
        for n in range(count)
    }


def assert_no_partial_documents(client: httpx.Client, database_url: str, repository_id: str) -> list[dict]:
    docs = documents(client, repository_id)
    chunks = stored_chunks(database_url, repository_id)
    assert set(chunks) == {d["id"] for d in docs}, "chunks without a document, or a document without chunks"
    for d in docs:
        assert chunks[d["id"]] == d["chunk_count"], (
            f"{d['name']}: {chunks[d['id']]} stored, {d['chunk_count']} expected"
        )
    return docs


def test_cancel_stops_a_running_job_and_keeps_only_whole_documents(admin: httpx.Client, lisa: LisaServer) -> None:
    repo = "rag-cancel"
    fresh_repository(admin, repo)
    resp = upload(admin, repo, corpus(100))  # the most one upload may carry (LISA_RAG_MAX_UPLOAD_FILES)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    deadline = time.monotonic() + 300  # a loaded machine embeds slowly
    while admin.get(f"/api/repositories/{repo}/jobs/{job_id}").json()["documents_done"] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    cancel = admin.post(f"/api/repositories/{repo}/jobs/{job_id}/cancel")
    assert cancel.status_code == 200, cancel.text
    job = wait_job(admin, repo, job_id)
    assert job["status"] == "cancelled" and job["error"] == "cancelled on request"
    assert 3 <= job["documents_done"] < 100
    statuses = [i["status"] for i in job["items"]]
    assert statuses.count("cancelled") == 100 - job["documents_done"] - job["documents_failed"]
    assert "pending" not in statuses
    docs = assert_no_partial_documents(admin, lisa.database_url, repo)
    assert len(docs) == job["documents_done"]
    again = admin.post(f"/api/repositories/{repo}/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "already ended" in again.json()["detail"]
    admin.delete(f"/api/repositories/{repo}")


@pytest.fixture
def solo(lisa: LisaServer, admin: httpx.Client, tmp_path: Path) -> Iterator[tuple[LisaServer, Path]]:
    """A backend with its own embedded database (so no other worker can take its jobs), embedding with the
    session's MiniLM server."""
    server = start_lisa(tmp_path / "data", local_models=False, env={"LISA_RAG_STALLED_SECONDS": "4"})
    embedding = admin.get("/api/models/minilm-l6-v2").json()
    body = {"id": "minilm-l6-v2", "type": "embedding", "hosting": "internal", "base_url": embedding["base_url"]}
    with server.client() as c:
        assert c.post("/api/models", json=body).status_code == 201
    yield server, tmp_path
    server.proc.stop()


def test_a_job_resumes_after_the_backend_is_killed(solo: tuple[LisaServer, Path]) -> None:
    server, tmp_path = solo
    repo = "rag-resume"
    with server.client() as c:
        fresh_repository(c, repo)
        resp = upload(c, repo, corpus(30, words=150))
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        deadline = time.monotonic() + 120
        while c.get(f"/api/repositories/{repo}/jobs/{job_id}").json()["documents_done"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        before = c.get(f"/api/repositories/{repo}/jobs/{job_id}").json()
    server.proc.stop(signal.SIGKILL)  # no shutdown: the job is left "in_progress" mid-way

    assert before["status"] == "in_progress" and before["documents_done"] < 30
    restarted = start_lisa(tmp_path / "data", local_models=False, env={"LISA_RAG_STALLED_SECONDS": "4"})
    try:
        with restarted.client() as c:
            job = wait_job(c, repo, job_id, timeout=240)
            assert job["status"] == "completed", job
            assert job["documents_done"] == 30 and job["documents_failed"] == 0
            assert all(i["status"] == "completed" for i in job["items"])
            docs = assert_no_partial_documents(c, restarted.database_url, repo)
            assert len(docs) == 30 and sum(d["chunk_count"] for d in docs) == job["chunks_done"]
    finally:
        restarted.proc.stop()

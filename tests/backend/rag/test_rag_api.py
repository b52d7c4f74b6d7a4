"""Repositories, collections, uploads, jobs, the document library and search, through the real platform."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pytest
from pypdf import PdfReader, PdfWriter

from tests.backend.rag.helpers import (
    documents,
    fresh_repository,
    ingest,
    search,
    stored_chunks,
    upload,
    wait_job,
)
from tests.ingestion.test_loaders import pdf_with_pages
from tests.support import LisaServer

REPO = "rag-api"

VACUUM = b"VACUUM reclaims storage occupied by dead tuples. Run it after large deletes so the space can be reused."
BACKUP = b"pg_dump writes a consistent snapshot of one database to a script or archive file while others keep working."
REPLICA = b"Streaming replication ships write-ahead log records to standby servers that replay them continuously."


@pytest.fixture(scope="module")
def repo(admin: httpx.Client) -> str:
    fresh_repository(admin, REPO)
    return REPO


def test_repository_and_collection_lifecycle(admin: httpx.Client) -> None:
    created = fresh_repository(admin, "rag-life", name="Life", allowed_groups=["team-x"])
    assert created["type"] == "pgvector" and created["embedding_model"] == "minilm-l6-v2"
    assert admin.post("/api/repositories", json={"id": "rag-life"}).status_code == 409
    assert admin.get("/api/repositories/rag-life/collections").json()["data"][0]["id"] == "default"
    default = admin.get("/api/repositories/rag-life/collections/default").json()
    assert default["dimensions"] == 384 and default["chunking"]["strategy"] == "tokens"

    body = {
        "id": "tok",
        "chunking": {"strategy": "tokens", "size": 128, "overlap": 16},
        "allow_chunking_override": False,
    }
    resp = admin.post("/api/repositories/rag-life/collections", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json()["chunking"] == {"strategy": "tokens", "size": 128, "overlap": 16}
    assert admin.post("/api/repositories/rag-life/collections", json=body).status_code == 409
    patched = admin.patch("/api/repositories/rag-life/collections/tok", json={"description": "token chunks"})
    assert patched.status_code == 200 and patched.json()["description"] == "token chunks"
    refused = upload(admin, "rag-life", {"a.txt": b"hello"}, collection="tok", chunking='{"strategy": "none"}')
    assert refused.status_code == 400 and "does not allow" in refused.json()["detail"]
    assert admin.delete("/api/repositories/rag-life/collections/tok").status_code == 204
    assert admin.get("/api/repositories/rag-life/collections/tok").status_code == 404

    assert admin.patch("/api/repositories/rag-life", json={"name": "Renamed"}).json()["name"] == "Renamed"
    events = admin.get("/api/audit", params={"resource_type": "repository", "resource_id": "rag-life"}).json()["data"]
    assert {"repository.create", "repository.update"} <= {e["action"] for e in events}
    assert admin.delete("/api/repositories/rag-life").status_code == 204
    assert admin.get("/api/repositories/rag-life").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"id": "Bad Id"}, 422, "pattern"),
        ({"id": "os-missing", "type": "opensearch"}, 422, "opensearch"),
        ({"id": "os-basic", "type": "opensearch", "opensearch": {"endpoint": "http://x:9200", "auth": "basic"}}, 422,
         "username and password"),
        ({"id": "no-model", "embedding_model": "nope"}, 400, "not registered"),
        ({"id": "wrong-type", "embedding_model": "gemma3-270m"}, 400, "not an embedding model"),
        ({"id": "bad-chunk"}, 0, ""),
    ],
)  # fmt: skip
def test_repository_bad_input_is_refused_and_leaves_nothing(
    admin: httpx.Client, body: dict, status: int, fragment: str
) -> None:
    if not status:  # a collection with impossible chunking
        fresh_repository(admin, "bad-chunk")
        resp = admin.post(
            "/api/repositories/bad-chunk/collections",
            json={"id": "c", "chunking": {"strategy": "fixed", "size": 50, "overlap": 40}},
        )
        assert resp.status_code == 422 and "between 100 and 10000" in resp.text
        assert admin.get("/api/repositories/bad-chunk/collections/c").status_code == 404
        admin.delete("/api/repositories/bad-chunk")
        return
    resp = admin.post("/api/repositories", json=body)
    assert resp.status_code == status, resp.text
    assert fragment in resp.text
    assert admin.get(f"/api/repositories/{body['id']}").status_code in (404, 422)


def test_upload_search_download_and_delete(admin: httpx.Client, repo: str, lisa: LisaServer) -> None:
    job = ingest(admin, repo, {"vacuum.txt": VACUUM, "backup.md": BACKUP}, tags="ops,postgres")
    assert job["status"] == "completed", job
    assert (job["documents_total"], job["documents_done"], job["documents_failed"]) == (2, 2, 0)
    assert job["chunks_done"] == 2 and [i["status"] for i in job["items"]] == ["completed", "completed"]
    job2 = ingest(admin, repo, {"replication.txt": REPLICA})
    assert job2["status"] == "completed"

    hits = search(admin, repo, "how can I get disk space back after deleting many rows", top_k=3)
    uploads = f"upload://{job['created_by']}"  # an upload's source names its uploader
    assert hits[0]["name"] == "vacuum.txt" and hits[0]["source"] == f"{uploads}/vacuum.txt"
    assert hits[0]["tags"] == ["ops", "postgres"] and hits[0]["collection_id"] == "default"
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    tagged = search(admin, repo, "standby servers", tag="ops", top_k=5)
    assert {h["name"] for h in tagged} == {"vacuum.txt", "backup.md"}
    only = search(admin, repo, "anything at all", source=f"{uploads}/backup.md")
    assert {h["name"] for h in only} == {"backup.md"}
    assert search(admin, repo, "standby servers", score_threshold=0.99) == []
    dense = search(admin, repo, "write-ahead log shipping to standbys", hybrid_weight=0.0, top_k=1)
    text_only = search(admin, repo, "write-ahead log shipping to standbys", hybrid_weight=1.0, top_k=1)
    assert dense[0]["name"] == text_only[0]["name"] == "replication.txt"

    docs = {d["name"]: d for d in documents(admin, repo)}
    assert set(docs) >= {"vacuum.txt", "backup.md", "replication.txt"}
    vacuum = docs["vacuum.txt"]
    content = admin.get(f"/api/repositories/{repo}/documents/{vacuum['id']}/content")
    assert content.status_code == 200 and content.content == VACUUM
    assert "vacuum.txt" in content.headers["content-disposition"]
    assert stored_chunks(lisa.database_url, repo)[vacuum["id"]] == vacuum["chunk_count"] == 1

    assert admin.delete(f"/api/repositories/{repo}/documents/{vacuum['id']}").status_code == 204
    assert admin.get(f"/api/repositories/{repo}/documents/{vacuum['id']}").status_code == 404
    assert vacuum["id"] not in stored_chunks(lisa.database_url, repo)
    assert all(h["name"] != "vacuum.txt" for h in search(admin, repo, "reclaim storage dead tuples", top_k=5))


def test_reingesting_replaces_chunks_and_identical_content_is_not_duplicated(
    admin: httpx.Client, repo: str, lisa: LisaServer
) -> None:
    first = ingest(admin, repo, {"notes.txt": b"The tablespace lives on the fast disk named orchid."})
    doc_id = first["items"][0]["document_id"]
    second = ingest(admin, repo, {"notes.txt": b"The tablespace moved to the archive disk named juniper."})
    assert second["items"][0]["document_id"] == doc_id and second["items"][0]["status"] == "completed"
    assert stored_chunks(lisa.database_url, repo)[doc_id] == 1
    notes = f"upload://{first['created_by']}/notes.txt"
    hits = search(admin, repo, "which disk holds the tablespace", source=notes, top_k=5)
    assert [h["text"] for h in hits] == ["The tablespace moved to the archive disk named juniper."]

    same = ingest(admin, repo, {"notes.txt": b"The tablespace moved to the archive disk named juniper."})
    assert same["documents_skipped"] == 1 and "unchanged" in same["items"][0]["error"]
    copy = ingest(admin, repo, {"copy-of-notes.txt": b"The tablespace moved to the archive disk named juniper."})
    assert copy["documents_skipped"] == 1 and notes in copy["items"][0]["error"]
    names = [d["name"] for d in documents(admin, repo)]
    assert names.count("notes.txt") == 1 and "copy-of-notes.txt" not in names


def _encrypted_pdf() -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_with_pages("secret"))))
    writer.encrypt("pw")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (200 * 1024 * 1024))
    return buf.getvalue()


def test_hostile_files_fail_with_reasons_and_leave_no_chunks(admin: httpx.Client, lisa: LisaServer) -> None:
    repo = "rag-hostile"
    fresh_repository(admin, repo)
    files = {
        "locked.pdf": _encrypted_pdf(),
        "broken.pdf": b"%PDF-1.4\n not a pdf \n%%EOF",
        "bomb.docx": _zip_bomb(),
        "laughs.xml": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><l>&b;</l>',
        "empty.txt": b"   \n",
    }
    job = ingest(admin, repo, files)
    assert job["status"] == "failed" and job["documents_failed"] == 5, job
    reasons = {i["name"]: i["error"] for i in job["items"]}
    assert "encrypted" in reasons["locked.pdf"]
    assert "zip bomb" in reasons["bomb.docx"]
    assert "DTD or entities" in reasons["laughs.xml"]
    assert "no text" in reasons["empty.txt"]
    assert reasons["broken.pdf"]
    assert documents(admin, repo) == [] and stored_chunks(lisa.database_url, repo) == {}

    mixed = ingest(admin, repo, {"good.txt": VACUUM, "bad.pdf": b"%PDF-1.4 junk"})
    assert mixed["status"] == "completed" and (mixed["documents_done"], mixed["documents_failed"]) == (1, 1)
    assert "1 of 2 documents failed" in mixed["error"]
    assert [d["name"] for d in documents(admin, repo)] == ["good.txt"]
    admin.delete(f"/api/repositories/{repo}")


@pytest.mark.parametrize(
    ("name", "data", "status", "fragment"),
    [
        ("../../etc/passwd.txt", b"x", 400, "without directories"),
        ("a/b.txt", b"x", 400, "without directories"),
        ("program.exe", b"MZ", 400, "unsupported file type"),
        ("noext", b"x", 400, "unsupported file type"),
    ],
)
def test_bad_uploads_are_refused_before_anything_is_written(
    admin: httpx.Client, repo: str, name: str, data: bytes, status: int, fragment: str
) -> None:
    before = admin.get(f"/api/repositories/{repo}/jobs", params={"limit": 500}).json()["data"]
    resp = upload(admin, repo, {name: data})
    assert resp.status_code == status and fragment in resp.json()["detail"], resp.text
    after = admin.get(f"/api/repositories/{repo}/jobs", params={"limit": 500}).json()["data"]
    assert len(after) == len(before)


def test_oversized_upload_gets_413(admin: httpx.Client, repo: str) -> None:
    big = b"a" * (50 * 1024 * 1024 + 1)
    resp = upload(admin, repo, {"big.txt": big})
    assert resp.status_code == 413 and "over the limit" in resp.json()["detail"]


def test_bulk_ingest_from_server_folders(admin: httpx.Client, lisa: LisaServer, ingest_root: Path) -> None:
    repo = "rag-bulk"
    fresh_repository(admin, repo)
    folder = ingest_root / "bulk"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "one.md").write_bytes(b"# Checkpoints\nA checkpoint flushes dirty buffers to disk.")
    (folder / "sub" / "two.html").write_bytes(b"<html><body><p>WAL archiving copies segments away.</p></body></html>")
    (folder / "skip.bin").write_bytes(b"\0\1")
    resp = admin.post(f"/api/repositories/{repo}/collections/default/ingest", json={"sources": [str(folder)]})
    assert resp.status_code == 202, resp.text
    job = wait_job(admin, repo, resp.json()["id"])
    assert job["status"] == "completed" and job["documents_total"] == 2
    assert {i["source"] for i in job["items"]} == {str(folder / "one.md"), str(folder / "sub" / "two.html")}
    assert search(admin, repo, "flushing dirty buffers", top_k=1)[0]["name"] == "one.md"

    outside = admin.post(f"/api/repositories/{repo}/collections/default/ingest", json={"sources": ["/etc/hostname"]})
    assert outside.status_code == 403 and "outside" in outside.json()["detail"]
    sneaky = str(folder) + "/../../../etc"
    assert (
        admin.post(f"/api/repositories/{repo}/collections/default/ingest", json={"sources": [sneaky]}).status_code
        == 403
    )
    relative = admin.post(f"/api/repositories/{repo}/collections/default/ingest", json={"sources": ["bulk/one.md"]})
    assert relative.status_code == 400
    missing = admin.post(
        f"/api/repositories/{repo}/collections/default/ingest", json={"sources": [str(folder / "gone.txt")]}
    )
    assert missing.status_code == 400 and "no such file" in missing.json()["detail"]
    admin.delete(f"/api/repositories/{repo}")


def test_access_follows_allowed_groups(admin: httpx.Client, lisa: LisaServer) -> None:
    fresh_repository(admin, "rag-team", allowed_groups=["team-rag"])
    ingest(admin, "rag-team", {"secret.txt": b"The launch code word is heliotrope."})

    def client_for(name: str, groups: list[str]) -> httpx.Client:
        resp = admin.post("/api/tokens", json={"name": name, "username": name, "groups": groups})
        assert resp.status_code == 201, resp.text
        return lisa.client(token=resp.json()["token"])

    with client_for("rag-member", ["team-rag"]) as member, client_for("rag-outsider", ["team-z"]) as outsider:
        assert search(member, "rag-team", "what is the code word")[0]["name"] == "secret.txt"
        assert outsider.get("/api/repositories/rag-team/search", params={"query": "code word"}).status_code == 404
        assert "rag-team" not in [r["id"] for r in outsider.get("/api/repositories").json()["data"]]
        assert upload(outsider, "rag-team", {"x.txt": b"x"}).status_code == 404
        assert member.post("/api/repositories/rag-team/collections", json={"id": "c"}).status_code == 403
        doc = documents(admin, "rag-team")[0]
        assert member.delete(f"/api/repositories/rag-team/documents/{doc['id']}").status_code == 403
    admin.delete("/api/repositories/rag-team")


def test_a_repository_and_collection_with_the_longest_ids_work(admin: httpx.Client) -> None:
    """Ids of 64 characters make a 62-character table name; the indexes' names, cut to PostgreSQL's 63 bytes, once
    came out equal ("..._" for both "_hnsw" and "_tsv") and the collection could not be created."""
    repository = "r" * 64
    collection = "c" * 64
    fresh_repository(admin, repository)
    try:
        made = admin.post(f"/api/repositories/{repository}/collections", json={"id": collection})
        assert made.status_code == 201, made.text
        job = ingest(admin, repository, {"vacuum.txt": VACUUM}, collection=collection)
        assert job["status"] == "completed", job
        [hit] = search(admin, repository, "reclaim space from dead rows", top_k=1, collection=collection)
        assert hit["name"] == "vacuum.txt" and hit["collection_id"] == collection
    finally:
        admin.delete(f"/api/repositories/{repository}")

"""Uploads, parsing and document ownership against hostile users, through running servers (issue 9: 3-5, 12)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg
import docx
import httpx
import psutil
import pytest

from backend.db.engine import asyncpg_dsn
from tests.backend.rag.helpers import documents, fresh_repository, search, stored_chunks, upload, wait_job
from tests.ingestion.hostile_files import HOSTILE_MD, docx_bomb, pdf_bomb
from tests.ingestion.test_loaders import pdf_with_pages
from tests.support import LISA, LisaServer, free_port, start_lisa

MIB = 1024 * 1024
MAX_FILE = 24 * MIB
QUOTA = 32 * MIB
PARSE_SECONDS = 1
# Text that takes seconds to parse whatever the machine: 20 MiB cut into windows of 16 tokens.
WORDS = b"lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor\n"
SLOW_TEXT = WORDS * (20 * MIB // len(WORDS))
SLOW_CHUNKING = json.dumps({"strategy": "tokens", "size": 16, "overlap": 0})


@dataclass
class Strict:
    server: LisaServer
    root: Path  # its one ingest root
    tmp: Path  # its TMPDIR, where uploads are staged


@pytest.fixture(scope="module")
def strict(admin: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Strict]:
    """A backend with small caps, a small quota and a 1 s parse limit, embedding with the session's MiniLM."""
    base = tmp_path_factory.mktemp("uploads-strict")
    root, tmp = base / "root", base / "tmp"
    root.mkdir()
    tmp.mkdir()
    env = {
        "LISA_RAG_MAX_FILE_BYTES": str(MAX_FILE),
        "LISA_RAG_MAX_UPLOAD_FILES": "3",
        "LISA_RAG_USER_QUOTA_BYTES": str(QUOTA),
        "LISA_RAG_PARSE_TIMEOUT_SECONDS": str(PARSE_SECONDS),
        "LISA_RAG_PARSE_WORKERS": "1",
        "LISA_RAG_INGEST_ROOTS": json.dumps([str(root)]),
        "TMPDIR": str(tmp),
    }
    server = start_lisa(base / "data", local_models=False, env=env)
    minilm = admin.get("/api/models/minilm-l6-v2").json()
    model = {"id": "minilm-l6-v2", "type": "embedding", "hosting": "internal", "base_url": minilm["base_url"]}
    with server.client() as c:
        assert c.post("/api/models", json=model).status_code == 201
    yield Strict(server, root, tmp)
    server.proc.stop()


def user_client(server: LisaServer, username: str) -> httpx.Client:
    """A plain user (no groups, no roles) of ``server``, via a token its admin issues for them."""
    with server.client() as admin:
        resp = admin.post("/api/tokens", json={"name": f"{username}-key", "username": username, "groups": []})
    assert resp.status_code == 201, resp.text
    return server.client(token=resp.json()["token"])


def count_rows(database_url: str, table: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        finally:
            await conn.close()

    return asyncio.run(count())


def jobs_of(client: httpx.Client, repo: str) -> list[str]:
    return [j["id"] for j in client.get(f"/api/repositories/{repo}/jobs", params={"limit": 500}).json()["data"]]


def padded_docx(text: str, padding: int) -> bytes:
    """A real .docx holding ``text``, padded with an incompressible part python-docx never reads."""
    document = docx.Document()
    document.add_paragraph(text)
    buf = io.BytesIO()
    document.save(buf)
    with zipfile.ZipFile(buf, "a") as archive:
        archive.writestr("customXml/padding.bin", os.urandom(padding), compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


def test_upload_caps_refuse_midway_and_leave_nothing(strict: Strict) -> None:
    server, repo = strict.server, "up-caps"
    with server.client() as c:
        fresh_repository(c, repo)
        blobs_before, jobs_before = count_rows(server.database_url, "rag_blobs"), jobs_of(c, repo)

        big = upload(c, repo, {"fine.txt": b"a small file that arrives first", "big.txt": b"a" * (MAX_FILE + MIB)})
        assert big.status_code == 413, big.text
        assert "big.txt" in big.json()["detail"] and str(MAX_FILE) in big.json()["detail"]

        many = upload(c, repo, {f"f{i}.txt": f"file number {i}".encode() for i in range(4)})
        assert many.status_code == 400 and "at most 3" in many.json()["detail"], many.text

        assert jobs_of(c, repo) == jobs_before and documents(c, repo) == []
        assert count_rows(server.database_url, "rag_blobs") == blobs_before
        assert not list(strict.tmp.glob("lisa-upload-*"))  # the staged parts were removed

        ok = upload(c, repo, {f"ok{i}.txt": f"Runbook {i}: restart the service number {i}.".encode() for i in range(3)})
        assert ok.status_code == 202, ok.text
        job = wait_job(c, repo, ok.json()["id"])
        assert job["status"] == "completed" and job["documents_done"] == 3, job
        assert not list(strict.tmp.glob("lisa-upload-*")) and not list(strict.tmp.glob("lisa-ingest-*"))


def test_server_memory_stays_flat_while_a_large_file_uploads(strict: Strict) -> None:
    server, repo = strict.server, "up-rss"
    process = psutil.Process(server.proc.popen.pid)
    with server.client() as c:
        fresh_repository(c, repo)
    with user_client(server, "rss-user") as user:
        warm = upload(user, repo, {"warm.txt": b"warm-up"})  # starts the parser pool and the worker threads
        assert wait_job(user, repo, warm.json()["id"])["status"] == "completed"
        baseline = process.memory_info().rss
        peak = [baseline]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            resp = upload(user, repo, {"large.txt": SLOW_TEXT}, chunking=SLOW_CHUNKING)
        finally:
            done.set()
            sampler.join()
        assert resp.status_code == 202, resp.text
        growth = peak[0] - baseline
        print(f"server RSS grew by {growth / MIB:.1f} MiB while receiving 20 MiB")
        assert growth < 12 * MIB, f"the server grew by {growth / MIB:.1f} MiB while receiving a 20 MiB upload"
        job = wait_job(user, repo, resp.json()["id"])
        assert job["status"] == "failed" and f"time limit of {PARSE_SECONDS} s" in job["items"][0]["error"], job


def test_the_gateway_keeps_answering_while_hostile_files_are_parsed(strict: Strict) -> None:
    server, repo = strict.server, "up-hostile"
    with server.client() as c:
        fresh_repository(c, repo)
    files = {"hostile.md": HOSTILE_MD, "slow.txt": SLOW_TEXT}
    with user_client(server, "hostile-user") as user, server.client(timeout=10) as probe:
        for _ in range(5):  # warm: token lookup cached, connection open
            assert probe.get("/v1/models").status_code == 200
        resp = upload(user, repo, files, chunking=SLOW_CHUNKING)
        assert resp.status_code == 202, resp.text
        job_id, latencies = resp.json()["id"], []
        deadline = time.monotonic() + 120
        while (job := user.get(f"/api/repositories/{repo}/jobs/{job_id}").json())["status"] not in (
            "completed",
            "failed",
        ):
            assert time.monotonic() < deadline, job
            for _ in range(10):
                start = time.perf_counter()
                assert probe.get("/v1/models").status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.02)
        assert probe.get("/v1/models").status_code == 200  # still serving
    reasons = {i["name"]: (i["status"], i["error"]) for i in job["items"]}
    print(f"/v1/models: {len(latencies)} calls, max {max(latencies) * 1000:.1f} ms")
    assert reasons["hostile.md"][0] == "completed", reasons
    assert reasons["slow.txt"][0] == "failed" and f"time limit of {PARSE_SECONDS} s" in reasons["slow.txt"][1]
    assert len(latencies) >= 20 and max(latencies) < 0.1, f"/v1/models took up to {max(latencies) * 1000:.0f} ms"


def test_a_users_storage_quota_refuses_uploads_past_it(strict: Strict) -> None:
    server, repo = strict.server, "up-quota"
    with server.client() as c:
        fresh_repository(c, repo)
    first = padded_docx("The first archive box is in room 12.", 20 * MIB)
    with user_client(server, "quota-user") as user:
        resp = upload(user, repo, {"box1.docx": first})
        assert resp.status_code == 202, resp.text
        assert wait_job(user, repo, resp.json()["id"])["status"] == "completed"
        jobs_before = jobs_of(user, repo)

        over = upload(user, repo, {"box2.docx": padded_docx("The second box is in room 14.", 20 * MIB)})
        assert over.status_code == 413, over.text
        detail = over.json()["detail"]
        assert f"quota of {QUOTA} bytes" in detail and f"{len(first)} bytes are used" in detail, detail
        assert jobs_of(user, repo) == jobs_before

        again = upload(user, repo, {"box1.docx": first})  # replacing one's own file is not counted twice
        assert again.status_code == 202, again.text
        assert wait_job(user, repo, again.json()["id"])["documents_skipped"] == 1


def test_uploads_of_one_name_by_two_users_never_collide(admin: httpx.Client, lisa: LisaServer) -> None:
    repo = "up-owners"
    fresh_repository(admin, repo)
    a_text = b"Handbook of team A: the espresso machine is descaled every Monday by Ada."
    b_text = b"Handbook of team B: the coffee grinder is cleaned every Friday by Bob."
    with user_client(lisa, "alice") as alice, user_client(lisa, "bob") as bob:
        assert wait_job(alice, repo, upload(alice, repo, {"handbook.md": a_text}).json()["id"])["status"] == "completed"
        a_doc = next(d for d in documents(alice, repo) if d["name"] == "handbook.md")
        a_chunks = stored_chunks(lisa.database_url, repo)[a_doc["id"]]

        job = wait_job(bob, repo, upload(bob, repo, {"handbook.md": b_text}).json()["id"])
        assert job["status"] == "completed" and job["items"][0]["status"] == "completed", job
        docs = {d["source"]: d for d in documents(admin, repo)}
        assert set(docs) == {"upload://alice/handbook.md", "upload://bob/handbook.md"}
        assert docs["upload://alice/handbook.md"]["ingested_by"] == "alice"
        assert docs["upload://bob/handbook.md"]["ingested_by"] == "bob"
        assert docs["upload://alice/handbook.md"] == a_doc  # untouched
        assert stored_chunks(lisa.database_url, repo)[a_doc["id"]] == a_chunks
        assert search(bob, repo, "espresso machine descaling", top_k=1)[0]["text"] == a_text.decode()
        assert search(alice, repo, "coffee grinder cleaning", top_k=1)[0]["text"] == b_text.decode()

        # The same content under another name, by someone else: their own document, not a pointer to Alice's.
        copy = wait_job(bob, repo, upload(bob, repo, {"copy-of-handbook.md": a_text}).json()["id"])
        assert copy["status"] == "completed" and copy["items"][0]["status"] == "completed", copy
        mine = next(d for d in documents(bob, repo) if d["name"] == "copy-of-handbook.md")
        assert mine["ingested_by"] == "bob" and mine["id"] != a_doc["id"]

        # Only the owner or a RAG admin deletes; a plain user cannot bulk re-ingest by path at all.
        assert bob.delete(f"/api/repositories/{repo}/documents/{a_doc['id']}").status_code == 403
        refused = bob.post(f"/api/repositories/{repo}/collections/default/ingest", json={"sources": ["/tmp/x.md"]})
        assert refused.status_code == 403
        assert alice.get(f"/api/repositories/{repo}/documents/{a_doc['id']}").status_code == 200
        assert admin.delete(f"/api/repositories/{repo}/documents/{a_doc['id']}").status_code == 204
    admin.delete(f"/api/repositories/{repo}")


def test_a_non_latin1_file_name_downloads_with_rfc6266_headers(admin: httpx.Client) -> None:
    repo, name = "up-names", "Prüfbericht \u2013 東京.pdf"  # with an en dash
    fresh_repository(admin, repo)
    pdf = pdf_with_pages("Pruefbericht fuer Tokio")
    job = wait_job(admin, repo, upload(admin, repo, {name: pdf}).json()["id"])
    assert job["status"] == "completed", job
    doc = next(d for d in documents(admin, repo) if d["name"] == name)
    resp = admin.get(f"/api/repositories/{repo}/documents/{doc['id']}/content")
    assert resp.status_code == 200 and resp.content == pdf
    disposition = resp.headers["content-disposition"]
    assert f"filename*=UTF-8''{quote(name)}" in disposition
    assert 'filename="Prufbericht' in disposition and disposition.isascii()
    admin.delete(f"/api/repositories/{repo}")


def test_decompression_bombs_fail_with_reasons(admin: httpx.Client, lisa: LisaServer) -> None:
    repo = "up-bombs"
    fresh_repository(admin, repo)
    job = wait_job(admin, repo, upload(admin, repo, {"bomb.pdf": pdf_bomb(), "bomb.docx": docx_bomb()}).json()["id"])
    reasons = {i["name"]: i["error"] for i in job["items"]}
    assert job["status"] == "failed" and job["documents_failed"] == 2, job
    assert "decompression limit" in reasons["bomb.pdf"]
    assert "word/document.xml" in reasons["bomb.docx"] and "bytes per part" in reasons["bomb.docx"]
    assert documents(admin, repo) == [] and stored_chunks(lisa.database_url, repo) == {}
    admin.delete(f"/api/repositories/{repo}")


def test_ingestion_never_reads_the_data_directory(strict: Strict, tmp_path: Path) -> None:
    server = strict.server
    (strict.root / "secrets").symlink_to(server.data_dir, target_is_directory=True)
    (strict.root / "runtime.json").symlink_to(server.data_dir / "runtime.json")
    with server.client() as c:
        fresh_repository(c, "up-datadir")
        for source in (strict.root / "secrets", strict.root / "runtime.json", server.data_dir / "runtime.json"):
            resp = c.post("/api/repositories/up-datadir/collections/default/ingest", json={"sources": [str(source)]})
            assert resp.status_code == 403 and "data directory" in resp.json()["detail"], resp.text

    # A root that contains the data directory is refused at start-up.
    data_dir = tmp_path / "data"
    env = {**os.environ, "LISA_RAG_INGEST_ROOTS": json.dumps([str(tmp_path)]), "_TYPER_STANDARD_TRACEBACK": "1"}
    argv = [LISA, "serve", "--port", str(free_port()), "--data-dir", str(data_dir), "--no-local-models"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("lisa serve started with an ingest root that contains its data directory")
    assert proc.returncode != 0 and b"overlaps the data directory" in out, out[-2000:]

"""``ingest``/``aingest`` and `lisa ingest` against the session's real platform (embedded PostgreSQL, MiniLM), over HTTP
and in-process; file planning and batching on their own."""

from __future__ import annotations

import asyncio
import getpass
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingestion import IngestError, IngestResult, aingest, ingest
from ingestion.loaders import MAX_BYTES
from ingestion.plan import batches, plan_files
from tests.support import LISA, ROOT, LisaServer

REPO = "ingest-client"
FILES = {
    "vacuum.txt": "VACUUM reclaims storage occupied by dead tuples. Run it after large deletes so space is reused.",
    "replication.md": "# Replication\n\nStreaming replication ships write-ahead log records to standby servers.",
    "backup.html": "<html><body><h1>Backups</h1><p>pg_dump writes a consistent snapshot of one database to an "
    "archive file while other sessions keep working.</p></body></html>",
    "indexes.csv": "index,purpose\nbtree,equality and range queries on sortable data\ngin,jsonb containment\n",
}


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


def write_corpus(folder: Path, files: dict[str, str] = FILES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def listed(admin: httpx.Client, repo: str, collection: str) -> dict[str, dict[str, Any]]:
    resp = admin.get(f"/api/repositories/{repo}/documents", params={"collection": collection, "limit": 500})
    assert resp.status_code == 200, resp.text
    return {d["name"]: d for d in resp.json()["data"]}


def top_hit(admin: httpx.Client, repo: str, collection: str, query: str) -> dict[str, Any]:
    resp = admin.get(f"/api/repositories/{repo}/search", params={"query": query, "collection": collection, "top_k": 3})
    assert resp.status_code == 200, resp.text
    hit: dict[str, Any] = resp.json()["results"][0]
    return hit


def over_http(lisa: LisaServer) -> dict[str, Any]:
    return {"url": lisa.url, "token": lisa.token}


def test_a_folder_is_uploaded_in_batches_and_becomes_searchable(
    lisa: LisaServer, admin: httpx.Client, repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    collection = new_collection(admin, repo)
    folder = write_corpus(tmp_path / "corpus")
    result = ingest(folder, repo, collection, tags=["notebook", "ops"], batch_files=3, **over_http(lisa))

    assert isinstance(result, IngestResult) and result.ok and result.finished
    assert len(result.job_ids) == 2  # 3 files, then 1
    assert set(result.statuses.values()) == {"completed"}
    assert (result.documents_total, result.documents_done, result.documents_failed, result.documents_skipped) == (
        4, 4, 0, 0,
    )  # fmt: skip
    assert result.failures == [] and result.skipped == []
    docs = listed(admin, repo, collection)
    assert set(docs) == set(FILES)
    assert result.chunks == sum(d["chunk_count"] for d in docs.values()) >= 4
    assert all(
        d["tags"] == ["notebook", "ops"] and d["source"] == f"upload://{d['ingested_by']}/{n}" for n, d in docs.items()
    )
    assert {d["job_id"] for d in docs.values()} == set(result.job_ids)
    for job_id in result.job_ids:
        job = admin.get(f"/api/repositories/{repo}/jobs/{job_id}").json()
        assert job["kind"] == "upload" and job["status"] == "completed" and job["collection_id"] == collection

    assert top_hit(admin, repo, collection, "which tool writes a consistent snapshot archive")["name"] == "backup.html"
    assert top_hit(admin, repo, collection, "reclaim storage of dead tuples")["name"] == "vacuum.txt"

    bar = capsys.readouterr().err  # the progress bar: every document of both jobs, chunks in the postfix
    assert "4/4" in bar and f"chunks={result.chunks}" in bar and f"{repo}/{collection}" in bar


def test_running_again_skips_unchanged_documents_and_duplicates_nothing(
    lisa: LisaServer, admin: httpx.Client, repo: str, tmp_path: Path
) -> None:
    collection = new_collection(admin, repo)
    folder = write_corpus(tmp_path / "corpus")
    first = ingest(folder, repo, collection, progress=False, **over_http(lisa))
    assert first.documents_done == 4
    before = listed(admin, repo, collection)

    again = ingest(folder, repo, collection, progress=False, **over_http(lisa))
    assert again.ok and again.job_ids != first.job_ids
    assert (again.documents_total, again.documents_done, again.documents_skipped, again.chunks) == (4, 0, 4, 0)
    assert sorted(s.name for s in again.skipped) == sorted(FILES)
    assert {s.reason for s in again.skipped} == {"unchanged since the last ingestion"}
    assert {s.path for s in again.skipped} == {str(folder / n) for n in FILES}
    after = listed(admin, repo, collection)
    assert set(after) == set(before) and all(after[n]["id"] == before[n]["id"] for n in before)

    (folder / "vacuum.txt").write_text("VACUUM FULL rewrites the whole table into a new file and locks it meanwhile.")
    changed = ingest(folder, repo, collection, progress=False, **over_http(lisa))
    assert (changed.documents_done, changed.documents_skipped) == (1, 3)
    final = listed(admin, repo, collection)
    assert len(final) == 4 and final["vacuum.txt"]["id"] == before["vacuum.txt"]["id"]  # replaced, not added
    assert final["vacuum.txt"]["sha256"] != before["vacuum.txt"]["sha256"]


def test_unsupported_oversized_and_clashing_files_are_reported_and_the_rest_ingested(
    lisa: LisaServer, admin: httpx.Client, repo: str, tmp_path: Path
) -> None:
    collection = new_collection(admin, repo)
    folder = write_corpus(tmp_path / "mixed", {"a.txt": "alpha notes about autovacuum", "b.md": "# Beta\n\nbloat"})
    (folder / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with (folder / "huge.txt").open("wb") as fh:  # one byte over the server's default limit (sparse: no disk used)
        fh.truncate(MAX_BYTES + 1)
    write_corpus(folder / "sub", {"a.txt": "another alpha in a subfolder"})
    write_corpus(folder / ".ipynb_checkpoints", {"a-checkpoint.txt": "a notebook's copy"})

    result = ingest(folder, repo, collection, progress=False, **over_http(lisa))

    assert (result.documents_total, result.documents_done, result.documents_skipped) == (5, 2, 3)
    assert result.failures == [] and result.ok and len(result.job_ids) == 1
    reasons = {s.path: s.reason for s in result.skipped}
    assert "unsupported file type '.png'" in reasons[str(folder / "picture.png")]
    assert f"over the limit of {MAX_BYTES} bytes" in reasons[str(folder / "huge.txt")]
    assert "another file of this name" in reasons[str(folder / "sub" / "a.txt")]
    assert set(listed(admin, repo, collection)) == {"a.txt", "b.md"}
    job = admin.get(f"/api/repositories/{repo}/jobs/{result.job_ids[0]}").json()
    assert job["documents_total"] == 2 and {i["name"] for i in job["items"]} == {"a.txt", "b.md"}


def test_refusals_raise_with_the_servers_message(
    lisa: LisaServer, admin: httpx.Client, repo: str, tmp_path: Path
) -> None:
    folder = write_corpus(tmp_path / "corpus")
    with pytest.raises(IngestError) as unknown:
        ingest(folder, "no-such-repository", progress=False, **over_http(lisa))
    assert unknown.value.status_code == 404
    assert "repository 'no-such-repository' not found" in str(unknown.value)

    collection = new_collection(admin, repo)
    with pytest.raises(IngestError) as bad_chunking:
        ingest(folder, repo, collection, chunking={"strategy": "fixed", "size": 50}, progress=False, **over_http(lisa))
    assert bad_chunking.value.status_code == 400
    assert "chunk size must be between 100 and 10000" in bad_chunking.value.message
    assert listed(admin, repo, collection) == {}

    with pytest.raises(IngestError) as bad_token:
        ingest(folder, repo, collection, url=lisa.url, token="lisa-not-a-token", progress=False)
    assert bad_token.value.status_code == 401

    with pytest.raises(IngestError, match="no such file or folder"):
        ingest(tmp_path / "missing", repo, collection, progress=False, **over_http(lisa))


def test_bad_arguments_are_clear_errors_before_any_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LISA_API_KEY", raising=False)
    monkeypatch.setenv("LISA_DATA_DIR", str(tmp_path / "no-data-dir"))
    with pytest.raises(IngestError, match="no API token"):
        ingest(write_corpus(tmp_path / "corpus"), REPO, url="http://127.0.0.1:9", progress=False)
    with pytest.raises(IngestError, match=r"repository id '\.\./models' is not valid"):
        ingest(tmp_path / "corpus", "../models", token="t", url="http://127.0.0.1:9", progress=False)
    with pytest.raises(IngestError, match="cannot use the platform database at postgresql://lisa:\\*\\*\\*@") as db:
        ingest(tmp_path / "corpus", REPO, in_process=True, database_url="postgresql://lisa:s3cr3t-pw@127.0.0.1:9/lisa")
    assert "s3cr3t" not in str(db.value)
    with pytest.raises(IngestError, match="holds a comma"):
        ingest(tmp_path / "corpus", REPO, tags=["a,b"], token="t", url="http://127.0.0.1:9", progress=False)


async def test_inside_a_running_loop_ingest_points_to_aingest_which_works(
    lisa: LisaServer, admin: httpx.Client, repo: str, tmp_path: Path
) -> None:
    folder = write_corpus(tmp_path / "corpus", {"notes.md": "# Notes\n\nCheckpoints flush dirty pages to disk."})
    with pytest.raises(RuntimeError, match=r"await aingest\(\.\.\.\)"):
        ingest(folder, repo, progress=False, **over_http(lisa))
    collection = new_collection(admin, repo)
    result = await aingest(folder, repo, collection, progress=False, **over_http(lisa))
    assert result.ok and result.documents_done == 1
    assert set(listed(admin, repo, collection)) == {"notes.md"}


def test_in_process_ingestion_runs_here_and_shows_in_the_api(
    lisa: LisaServer, admin: httpx.Client, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LISA_RAG_INGEST_ROOTS", raising=False)  # this call's folders are its roots
    monkeypatch.delenv("LISA_DATABASE_URL", raising=False)
    collection = new_collection(admin, repo)
    folder = write_corpus(tmp_path / "corpus")
    (folder / "notes.bin").write_bytes(b"\0\1")
    kwargs: dict[str, Any] = {"in_process": True, "database_url": lisa.database_url, "progress": False}

    result = ingest(folder, repo, collection, tags=["local"], **kwargs)

    assert result.ok and len(result.job_ids) == 1
    assert (result.documents_total, result.documents_done, result.documents_skipped) == (5, 4, 1)
    assert "unsupported file type '.bin'" in result.skipped[0].reason
    docs = listed(admin, repo, collection)
    assert set(docs) == set(FILES)
    assert all(d["source"] == str(folder / n) and d["tags"] == ["local"] for n, d in docs.items())
    assert {d["ingested_by"] for d in docs.values()} == {getpass.getuser()}
    assert result.chunks == sum(d["chunk_count"] for d in docs.values())
    job = admin.get(f"/api/repositories/{repo}/jobs/{result.job_ids[0]}").json()
    assert (job["kind"], job["status"], job["documents_done"]) == ("bulk", "completed", 4)
    assert top_hit(admin, repo, collection, "standby servers replay write-ahead log")["name"] == "replication.md"

    again = ingest(folder, repo, collection, **kwargs)
    assert (again.documents_done, again.documents_skipped) == (0, 5)
    assert len(listed(admin, repo, collection)) == 4

    with pytest.raises(IngestError, match="collection 'nope' not found"):
        ingest(folder, repo, "nope", **kwargs)


def run_lisa_ingest(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LISA_")}
    return subprocess.run(
        [LISA, "ingest", *args], cwd=cwd, env={**base, "COLUMNS": "300", **env}, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip


def test_cli_ingests_with_url_and_token_from_the_environment(
    lisa: LisaServer, admin: httpx.Client, repo: str, tmp_path: Path
) -> None:
    collection = new_collection(admin, repo)
    folder = write_corpus(tmp_path / "corpus")
    (folder / "skip.exe").write_bytes(b"MZ")
    env = {"LISA_URL": lisa.url, "LISA_API_KEY": lisa.token}
    args = [str(folder), "--repository", repo, "--collection", collection, "--tag", "cli", "--tag", "docs"]
    done = run_lisa_ingest(*args, "--chunking", '{"strategy": "none"}', cwd=tmp_path, env=env)

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{repo}/{collection}: 4 ingested, 0 failed, 1 skipped of 5 files" in done.stdout
    assert "skipped skip.exe: unsupported file type '.exe'" in done.stdout
    docs = listed(admin, repo, collection)
    assert set(docs) == set(FILES)
    assert all(d["tags"] == ["cli", "docs"] and d["chunking"]["strategy"] == "none" for d in docs.values())
    assert all(d["chunk_count"] == 1 for n, d in docs.items() if n != "indexes.csv")

    refused = run_lisa_ingest(str(folder), "--repository", "no-such-repository", cwd=tmp_path, env=env)
    assert refused.returncode == 1
    assert "repository 'no-such-repository' not found" in refused.stdout

    no_token = run_lisa_ingest(str(folder), "--repository", repo, cwd=tmp_path, env={"LISA_URL": lisa.url})
    assert no_token.returncode == 2 and "no API token" in no_token.stdout + no_token.stderr


def test_plan_refuses_files_up_front_with_reasons(tmp_path: Path) -> None:
    write_corpus(tmp_path / "f", {"a.txt": "x" * 10, "b.json": "{}", "c.docx.bak": "?", "big.md": "y" * 100})
    write_corpus(tmp_path / "f" / "deeper", {"a.txt": "z", "d.yaml": "k: v"})
    write_corpus(tmp_path / "f" / ".git", {"config.txt": "hidden"})
    plan = plan_files(tmp_path / "f", max_bytes=50, unique_names=True)
    assert [p.name for p in plan.files] == ["a.txt", "b.json", "d.yaml"]
    assert {s.name: s.reason.split(" (")[0] for s in plan.skipped} == {
        "big.md": "100 bytes is over the limit of 50 bytes",
        "c.docx.bak": "unsupported file type '.bak'",
        "a.txt": "another file of this name is in this ingestion",
    }
    assert plan.total == 6 and plan.roots == [(tmp_path / "f").resolve()]
    loose = plan_files(
        [tmp_path / "f" / "deeper" / "a.txt", tmp_path / "f" / "a.txt"], max_bytes=50, unique_names=False
    )
    assert len(loose.files) == 2 and loose.roots == [(tmp_path / "f" / "deeper").resolve(), (tmp_path / "f").resolve()]
    with pytest.raises(IngestError, match="no paths given"):
        plan_files([], max_bytes=50, unique_names=True)


def test_batches_are_bounded_by_count_and_bytes(tmp_path: Path) -> None:
    sizes = {"a.txt": 10, "b.txt": 10, "c.txt": 30, "d.txt": 5, "e.txt": 5, "f.txt": 5}
    files = []
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
        files.append(tmp_path / name)
    groups = [[p.name for p in g] for g in batches(files, max_files=2, max_bytes=25)]
    assert groups == [["a.txt", "b.txt"], ["c.txt"], ["d.txt", "e.txt"], ["f.txt"]]
    with pytest.raises(IngestError, match="batch_files"):
        list(batches(files, max_files=0, max_bytes=25))


def wait_for_job(admin: httpx.Client, repo: str, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = admin.get(f"/api/repositories/{repo}/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.3)


def test_without_waiting_uploaded_jobs_are_left_to_the_platform(
    lisa: LisaServer, admin: httpx.Client, repo: str, tmp_path: Path
) -> None:
    collection = new_collection(admin, repo)
    uploaded = ingest(write_corpus(tmp_path / "up"), repo, collection, wait=False, **over_http(lisa))
    assert len(uploaded.job_ids) == 1 and not uploaded.finished and uploaded.documents_done == 0
    assert wait_for_job(admin, repo, uploaded.job_ids[0])["documents_done"] == 4

    with pytest.raises(IngestError, match="in-process ingestion runs in this process") as refused:
        ingest(tmp_path / "up", repo, collection, wait=False, in_process=True, database_url=lisa.database_url)
    assert refused.value.job_ids == []
    assert len(admin.get(f"/api/repositories/{repo}/jobs", params={"collection": collection}).json()["data"]) == 1


def many_files(folder: Path, count: int = 150) -> Path:
    """Enough work (about 8 chunks each) that a job is still running well after its first document."""
    words = ["autovacuum", "freezes", "old", "transaction", "ids", "so", "wraparound", "never", "corrupts", "rows"]
    body = " ".join(words[k % len(words)] for k in range(600))
    texts = {f"doc-{n:03}.txt": f"Document number {n}. {body}" for n in range(count)}  # no two alike
    return write_corpus(folder, texts)


async def test_cancelling_an_in_process_ingestion_cancels_its_job(lisa: LisaServer, repo: str, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=lisa.url, headers=lisa.headers, timeout=60) as api:
        collection = "c-" + secrets.token_hex(4)
        assert (await api.post(f"/api/repositories/{repo}/collections", json={"id": collection})).status_code == 201
        folder = many_files(tmp_path / "many")
        task = asyncio.create_task(
            aingest(
                folder,
                repo,
                collection,
                in_process=True,
                database_url=lisa.database_url,
                progress=False,
                batch_files=200,
            )
        )
        job: dict[str, Any] = {}
        deadline = time.monotonic() + 120
        while not job or job["documents_done"] == 0:
            assert time.monotonic() < deadline and not task.done(), "the job never started"
            await asyncio.sleep(0.2)
            page = (await api.get(f"/api/repositories/{repo}/jobs", params={"collection": collection})).json()
            job = page["data"][0] if page["data"] else {}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ended = (await api.get(f"/api/repositories/{repo}/jobs/{job['id']}")).json()
    assert ended["status"] == "cancelled" and ended["error"] == "cancelled on request"
    assert 0 < ended["documents_done"] < 150
    assert {i["status"] for i in ended["items"]} <= {"completed", "cancelled"} and "cancelled" in {
        i["status"] for i in ended["items"]
    }


def test_a_killed_in_process_run_is_ended_by_the_next_one(
    lisa: LisaServer, admin: httpx.Client, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stalled after 6 s: the next run's worker prunes every worker silent that long, the session server's too,
    # whose heartbeat comes every 2 s; a pruned worker stops taking jobs (its id is gone from procrastinate_workers).
    fast = {"LISA_RAG_HEARTBEAT_SECONDS": "0.5", "LISA_RAG_STALLED_SECONDS": "6"}
    collection = new_collection(admin, repo)
    folder = many_files(tmp_path / "many")
    script = (
        "import sys; from ingestion import ingest; "
        "ingest(sys.argv[1], sys.argv[2], sys.argv[3], in_process=True, database_url=sys.argv[4], "
        "progress=False, batch_files=200)"
    )
    argv = [sys.executable, "-c", script, str(folder), repo, collection, lisa.database_url]
    notebook = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **fast}, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        jobs: list[dict[str, Any]] = []
        while not jobs or jobs[0]["documents_done"] == 0:
            assert notebook.poll() is None, notebook.communicate()[1].decode()
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.2)
            jobs = admin.get(f"/api/repositories/{repo}/jobs", params={"collection": collection}).json()["data"]
    finally:
        notebook.kill()
        notebook.communicate()
    job_url = f"/api/repositories/{repo}/jobs/{jobs[0]['id']}"
    time.sleep(7)  # its worker's heartbeat is now stale
    assert admin.get(job_url).json()["status"] == "in_progress"  # nothing else touches a job on a private queue

    for key, value in fast.items():
        monkeypatch.setenv(key, value)
    small = write_corpus(tmp_path / "small", {"later.txt": "Later, a small unrelated ingestion in a new process."})
    later = ingest(small, repo, new_collection(admin, repo), in_process=True, database_url=lisa.database_url)
    assert later.ok and later.documents_done == 1
    ended = admin.get(job_url).json()
    assert ended["status"] == "cancelled" and 0 < ended["documents_done"] < 150
    assert "pending" not in {i["status"] for i in ended["items"]}

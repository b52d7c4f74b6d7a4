"""Documents in a session's context through the running server: upload (txt, md, code, pdf, docx), list, replace,
delete, what joins the prompt cut to fit a small context window, and the bad inputs and other users' sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from backend.chat.context_docs import allocate, storable
from backend.db.engine import asyncpg_dsn
from tests.backend.chat.context_helpers import local_gemma, upload
from tests.backend.chat.helpers import new_session, new_user
from tests.ingestion.test_loaders import docx_bytes, pdf_with_pages
from tests.support import LisaServer

MIB = 1024 * 1024
CODE = b'def greet(name: str) -> str:\n    """Say hello."""\n    return f"hello {name}"\n'
FILES = [
    ("notes.txt", b"Project Falcon ships on 12 March. The budget is 40,000 euros."),
    ("readme.md", b"# Falcon\n\nA *small* markdown file.\n"),
    ("greet.py", CODE),
    ("report.pdf", pdf_with_pages("Quarterly report page one", "Revenue grew by nine percent")),
    ("memo.docx", docx_bytes("Memo: the launch moves to April.")),
]


@pytest.fixture(scope="module")
def alice(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "ctx-alice") as client:
        yield client


@pytest.fixture(scope="module")
def bob(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "ctx-bob") as client:
        yield client


def scalar(lisa: LisaServer, sql: str, *args: object) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(lisa.database_url))
        try:
            return int(await conn.fetchval(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def held(lisa: LisaServer, session: str) -> int:
    """The session's count of documents, which a turn reads to skip sessions without any."""
    return scalar(lisa, "SELECT context_documents FROM chat_sessions WHERE id = $1", session)


def test_documents_are_uploaded_listed_and_deleted(alice: httpx.Client, lisa: LisaServer) -> None:
    session = new_session(alice, title="docs")["id"]
    resp = upload(alice, session, *FILES)
    assert resp.status_code == 201, resp.text
    docs = resp.json()["data"]
    assert [d["name"] for d in docs] == [name for name, _ in FILES] and held(lisa, session) == len(FILES)
    for doc, (_, data) in zip(docs, FILES, strict=True):
        assert doc["session_id"] == session and doc["size_bytes"] == len(data)
        assert doc["chars"] > 0 and doc["tokens"] > 0 and doc["summary"] is None
        assert "text" not in doc and "owner" not in doc
    listed = alice.get(f"/api/sessions/{session}/documents").json()
    assert [d["id"] for d in listed["data"]] == [d["id"] for d in docs] and listed["next_cursor"] is None
    first = alice.get(f"/api/sessions/{session}/documents", params={"limit": 2}).json()
    rest = alice.get(f"/api/sessions/{session}/documents", params={"cursor": first["next_cursor"]}).json()
    assert [d["id"] for d in first["data"] + rest["data"]] == [d["id"] for d in docs]
    pdf = next(d for d in docs if d["name"] == "report.pdf")
    assert alice.get(f"/api/sessions/{session}/documents/{pdf['id']}").json() == pdf
    # What each file's text became: the preview shows it joining the prompt
    preview = alice.get(f"/api/sessions/{session}/context", params={"model": "gemma3-270m"}).json()
    for expected in ("12 March", "# Falcon", 'return f"hello {name}"', "Revenue grew by nine percent",
                     "the launch moves to April", 'name="greet.py"'):  # fmt: skip
        assert expected in preview["text"], expected
    assert preview["notices"] == []
    assert alice.delete(f"/api/sessions/{session}/documents/{pdf['id']}").status_code == 204
    assert alice.get(f"/api/sessions/{session}/documents/{pdf['id']}").status_code == 404
    assert alice.delete(f"/api/sessions/{session}/documents/{pdf['id']}").status_code == 404
    assert len(alice.get(f"/api/sessions/{session}/documents").json()["data"]) == len(FILES) - 1
    assert held(lisa, session) == len(FILES) - 1


def test_a_name_already_in_the_session_is_replaced(alice: httpx.Client, lisa: LisaServer) -> None:
    session = new_session(alice)["id"]
    old = upload(alice, session, ("plan.txt", b"the old plan")).json()["data"][0]
    new = upload(alice, session, ("plan.txt", b"the new plan, longer than before")).json()["data"][0]
    listed = alice.get(f"/api/sessions/{session}/documents").json()["data"]
    assert [d["id"] for d in listed] == [new["id"]] and new["id"] != old["id"]
    assert new["size_bytes"] == len(b"the new plan, longer than before") and held(lisa, session) == 1


def test_bad_uploads_are_refused_and_nothing_is_kept(alice: httpx.Client) -> None:
    session = new_session(alice)["id"]
    url = f"/api/sessions/{session}/documents"
    refused = upload(alice, session, ("tool.exe", b"MZ\x90\x00"))
    assert refused.status_code == 400 and "unsupported file type '.exe'" in refused.json()["detail"]
    # One unparseable file refuses the whole upload: the good one is not kept either
    corrupt = upload(alice, session, ("good.txt", b"fine"), ("broken.pdf", b"%PDF-1.4 this is no pdf"))
    assert corrupt.status_code == 400 and "broken.pdf" in corrupt.json()["detail"], corrupt.text
    empty = upload(alice, session, ("blank.txt", b"   \n  "))
    assert empty.status_code == 400 and "no text" in empty.json()["detail"]
    too_big = upload(alice, session, ("big.txt", b"a" * (20 * MIB + 1)))
    assert too_big.status_code == 413 and "big.txt" in too_big.json()["detail"], too_big.text
    too_long = upload(alice, session, ("long.txt", b"word " * 420_000))  # 2.1 million characters of text
    assert too_long.status_code == 413 and "characters" in too_long.json()["detail"], too_long.text
    not_multipart = alice.post(url, json={"files": "x"})
    assert not_multipart.status_code == 400 and "multipart/form-data" in not_multipart.json()["detail"]
    no_files = alice.post(url, data={"other": "x"}, files={"dummy": ("", b"")})
    assert no_files.status_code == 400, no_files.text
    twice = upload(alice, session, ("a.txt", b"1"), ("a.txt", b"2"))
    assert twice.status_code == 400 and "twice" in twice.json()["detail"]
    assert alice.get(url).json()["data"] == []


def test_a_session_holds_a_bounded_number_of_documents(alice: httpx.Client) -> None:
    session = new_session(alice)["id"]
    for batch in range(5):
        files = [(f"d{batch}-{i}.txt", f"document {batch}-{i}".encode()) for i in range(10)]
        assert upload(alice, session, *files).status_code == 201
    over = upload(alice, session, ("one-more.txt", b"x"))
    assert over.status_code == 409 and "at most 50 documents" in over.json()["detail"]
    # replacing one that is there still works (it does not add one)
    assert upload(alice, session, ("d0-0.txt", b"replaced")).status_code == 201
    assert upload(alice, session, *[(f"x{i}.txt", b"x") for i in range(11)]).status_code == 400  # per upload: 10


def test_another_users_session_and_documents_are_not_found(alice: httpx.Client, bob: httpx.Client) -> None:
    session = new_session(alice)["id"]
    doc = upload(alice, session, ("secret.txt", b"alice's secret")).json()["data"][0]["id"]
    base = f"/api/sessions/{session}"
    assert upload(bob, session, ("x.txt", b"x")).status_code == 404
    assert bob.get(f"{base}/documents").status_code == 404
    assert bob.get(f"{base}/documents/{doc}").status_code == 404
    assert bob.delete(f"{base}/documents/{doc}").status_code == 404
    assert bob.get(f"{base}/context", params={"model": "gemma3-270m"}).status_code == 404
    summary = bob.post(f"{base}/documents/{doc}/summary", json={"model": "gemma3-270m"})
    assert summary.status_code == 404
    # bob's own session does not reach alice's document either
    own = new_session(bob)["id"]
    assert bob.get(f"/api/sessions/{own}/documents/{doc}").status_code == 404
    assert bob.delete(f"/api/sessions/{own}/documents/{doc}").status_code == 404
    assert upload(bob, "ses_doesnotexist", ("x.txt", b"x")).status_code == 404
    assert alice.get(f"{base}/documents/{doc}").status_code == 200  # still there


def test_documents_are_cut_to_fit_the_window_and_the_user_is_told(admin: httpx.Client, alice: httpx.Client) -> None:
    small = b"Small note: the access code is 4711."
    large = " ".join(f"Sentence {i} of the long design document explains one more detail." for i in range(400))
    session = new_session(alice)["id"]
    docs = upload(alice, session, ("note.txt", small), ("design.md", large.encode())).json()["data"]
    with local_gemma(admin, "ctx-tiny", context_window=1000, features=[]) as tiny:
        preview = alice.get(f"/api/sessions/{session}/context", params={"model": tiny}).json()
    assert preview["context_window"] == 1000 and preview["budget_tokens"] == 400
    assert preview["documents_tokens"] <= preview["budget_tokens"]
    assert "the access code is 4711" in preview["text"]  # the small one whole
    assert "Sentence 0 of" in preview["text"] and "Sentence 399 of" not in preview["text"]
    assert "cut to fit the context window" in preview["text"]
    [notice] = preview["notices"]
    design = next(d for d in docs if d["name"] == "design.md")
    assert notice["document_id"] == design["id"] and notice["name"] == "design.md" and not notice["omitted"]
    assert 0 < notice["kept_tokens"] < notice["total_tokens"] == design["tokens"]
    assert "design.md" in notice["message"] and "to fit the model's context window" in notice["message"]
    # a model the caller may not see is not found; a model with a large window needs no cut
    assert alice.get(f"/api/sessions/{session}/context", params={"model": "no-such-model"}).status_code == 404
    with local_gemma(admin, "ctx-wide", context_window=100_000, features=[]) as wide:
        whole = alice.get(f"/api/sessions/{session}/context", params={"model": wide}).json()
    assert whole["notices"] == [] and "Sentence 399 of" in whole["text"]


def test_deleting_the_session_deletes_its_documents(alice: httpx.Client, lisa: LisaServer) -> None:
    session = new_session(alice)["id"]
    assert upload(alice, session, ("gone.txt", b"soon gone")).status_code == 201
    assert alice.delete(f"/api/sessions/{session}").status_code == 204

    async def remaining() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(lisa.database_url))
        try:
            return int(
                await conn.fetchval("SELECT count(*) FROM chat_context_documents WHERE session_id = $1", session)
            )
        finally:
            await conn.close()

    assert asyncio.run(remaining()) == 0


def test_the_budget_is_shared_fairly_and_text_is_made_storable() -> None:
    assert allocate([100, 5000, 20], 1000) == [100, 880, 20]  # small ones whole, the rest to the large one
    assert allocate([900, 900], 1000) == [500, 500]
    assert allocate([10, 10], 0) == [0, 0] and allocate([], 100) == []
    assert sum(allocate([7, 300, 301, 302], 500)) <= 500
    assert storable("a\x00b\ud800c") == "ab?c"

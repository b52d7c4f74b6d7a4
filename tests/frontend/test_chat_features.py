"""The chat tab's branches, RAG sources and documents in context, in a real browser against the real backend
(gemma3-270m on llama.cpp, MiniLM embeddings, pgvector)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import FilePayload, Page, expect

from tests.backend.chat.context_helpers import local_gemma
from tests.backend.rag.helpers import fresh_repository, ingest
from tests.frontend.chat_page import bot_messages, choose_model, send, set_arguments, watch_answer
from tests.frontend.conftest import User, sign_in
from tests.frontend.shots import screenshot_path
from tests.support import LisaServer

MODEL = "gemma3-270m"
WINDOW = 512
QUOKKA = (
    b"# Quokka care\n\nThe quokka enclosure on Rottnest is cleaned every Tuesday by keeper Marguerite Oyelaran. "
    b"Visitors must stay two metres away from the quokkas and never feed them bread.\n"
)


def pick(page: Page, dropdown: str, option: str) -> None:
    page.click(f"{dropdown} input")
    page.get_by_role("option", name=option).click()


def open_accordion(page: Page, title: str) -> None:
    page.get_by_text(title, exact=True).click()


def session_messages(user: User, session_id: str) -> list[dict]:
    resp = user.api.get(f"/api/sessions/{session_id}")
    assert resp.status_code == 200, resp.text
    messages: list[dict] = resp.json()["messages"]
    return messages


def newest_session_id(user: User) -> str:
    sessions = user.api.get("/api/sessions").json()["data"]
    assert sessions, "the app created no session"
    return str(sessions[0]["id"])


@pytest.fixture(scope="module")
def small_window(admin: httpx.Client) -> Iterator[str]:
    """gemma3-270m again, with a 512-token window (documents get cut) and the summarization feature."""
    with local_gemma(admin, "ui-ctx", context_window=WINDOW, features=["summarization"]) as model_id:
        yield model_id


def test_an_answer_cites_a_library_document_that_opens_and_downloads(
    page: Page, lisa: LisaServer, admin: httpx.Client, user: User
) -> None:
    repository = f"ui-rag-{secrets.token_hex(3)}"
    fresh_repository(admin, repository, name="Zoo handbook")
    job = ingest(user.api, repository, {"quokka-care.md": QUOKKA})  # the user's own upload, through the API
    assert job["status"] == "completed", job
    try:
        sign_in(page, lisa, user.token)
        choose_model(page, MODEL)
        set_arguments(page, max_tokens=40)
        open_accordion(page, "Answer from documents (RAG)")
        pick(page, "#lisa-rag-repo", "Zoo handbook")
        send(page, "Who cleans the quokka enclosure?")
        watch_answer(page, until="tokens")
        expect(bot_messages(page).last).to_contain_text("Sources:")
        expect(bot_messages(page).last).to_contain_text("Quokka care")  # the page title the source carries
        # The cited source opens: the passage and a link to the original in the library.
        preview = page.locator("#lisa-source-preview")
        expect(preview).to_contain_text("Marguerite Oyelaran")
        expect(page.locator("#lisa-sources")).to_contain_text("[1] Quokka care")
        link = preview.get_by_role("link", name="Download the original")
        expect(link).to_be_visible()
        with page.expect_download() as download:
            link.click()
        path = download.value.path()
        assert Path(path).read_bytes() == QUOKKA
        assert download.value.suggested_filename == "quokka-care.md"
        answer = session_messages(user, newest_session_id(user))[-1]
        assert answer["metadata"]["rag"]["repositories"] == [repository]
        assert answer["metadata"]["sources"][0]["name"] == "quokka-care.md"
        page.screenshot(path=screenshot_path("chat-sources.png"), full_page=True)
    finally:
        admin.delete(f"/api/repositories/{repository}")


def test_regenerate_makes_a_second_branch_and_the_first_stays_reachable(
    page: Page, lisa: LisaServer, user: User
) -> None:
    sign_in(page, lisa, user.token)
    choose_model(page, MODEL)
    set_arguments(page, max_tokens=24)
    page.get_by_label("Temperature (0-2)").fill("1.5")
    send(page, "Name a colour and a fruit.")
    watch_answer(page, until="tokens")
    session_id = newest_session_id(user)
    first = session_messages(user, session_id)[-1]
    page.click("#lisa-regenerate")
    picker = page.locator("#lisa-branch-at input")
    expect(picker).to_be_visible(timeout=90_000)
    expect(picker).to_have_value(re.compile("2/2"))
    messages = session_messages(user, session_id)
    second = messages[-1]
    assert second["id"] != first["id"] and second["siblings"] == [first["id"], second["id"]]
    expect(bot_messages(page)).to_have_count(1)
    expect(bot_messages(page).last).to_contain_text("2/2")
    # The first answer is one click away, and the backend shows that branch again.
    page.click("#lisa-branch-prev")
    expect(picker).to_have_value(re.compile("1/2"))
    first_words = first["content"].split()[0][:12]  # (the bubble renders the answer's Markdown)
    expect(bot_messages(page).last).to_contain_text(first_words)
    expect(bot_messages(page).last).to_contain_text("1/2")
    assert session_messages(user, session_id)[-1]["id"] == first["id"]
    page.click("#lisa-branch-next")
    expect(picker).to_have_value(re.compile("2/2"))
    assert session_messages(user, session_id)[-1]["id"] == second["id"]


def long_document() -> bytes:
    return "\n\n".join(
        f"Chapter {i + 1}. The {topic} was rebuilt in {1900 + 7 * i}. " + f"People visited the {topic} daily. " * 12
        for i, topic in enumerate(["harbour", "orchard", "library", "railway", "glacier", "market"])
    ).encode()


def test_a_context_document_shows_its_truncation_notice_and_summarises_with_progress(
    page: Page, lisa: LisaServer, user: User, small_window: str
) -> None:
    session = user.api.post("/api/sessions", json={"title": "Town notes", "model": small_window}).json()
    sign_in(page, lisa, user.token)
    page.locator("#lisa-sessions").get_by_text("Town notes").click()
    choose_model(page, small_window)
    set_arguments(page, max_tokens=24)  # the summary's length too
    open_accordion(page, "Context documents")
    upload: FilePayload = {"name": "town.txt", "mimeType": "text/plain", "buffer": long_document()}
    page.set_input_files("#lisa-docs-upload input[type=file]", files=[upload])
    notices = page.locator("#lisa-docs-notices")
    expect(notices).to_contain_text("town.txt: only the first", timeout=60_000)
    expect(notices).to_contain_text("context window")
    documents = user.api.get(f"/api/sessions/{session['id']}/documents").json()["data"]
    assert [d["name"] for d in documents] == ["town.txt"]
    page.locator("#lisa-docs-list").get_by_text("town.txt").click()
    page.click("#lisa-docs-summarize")
    summary = page.locator("#lisa-docs-summary")
    seen: list[str] = []
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        text = summary.inner_text()
        if not seen or text != seen[-1]:
            seen.append(text)
        if text.startswith("Summary"):
            break
        time.sleep(0.05)
    assert seen[-1].startswith("Summary"), seen
    assert any("step" in s for s in seen), f"no progress was shown: {seen}"
    kept = user.api.get(f"/api/sessions/{session['id']}/documents").json()["data"][0]
    words = re.sub(r"<[^>]+>", " ", kept["summary"]).split()[:4]  # (the small model may answer in HTML)
    assert words and " ".join(words) in " ".join(seen[-1].split()), (words, seen[-1])


def test_the_prompt_library_tab_button_shows_once_after_it_is_opened(page: Page, lisa: LisaServer, user: User) -> None:
    sign_in(page, lisa, user.token)
    buttons = page.locator('button[role="tab"]', has_text="Prompt Library").locator("visible=true")
    expect(buttons).to_have_count(1)
    buttons.first.click()
    expect(page.locator("#lisa-pt-search")).to_be_visible()
    expect(buttons).to_have_count(1)  # it showed twice here (docs/frontend.md)
    page.locator('button[role="tab"]', has_text="Chat").locator("visible=true").first.click()
    expect(buttons).to_have_count(1)

"""The chat tab in a real browser against the real backend and the local gemma3-270m (llama.cpp)."""

from __future__ import annotations

import time

import httpx
from playwright.sync_api import Page, expect

from tests.frontend.chat_page import (
    bot_messages,
    choose_model,
    last_bot_text,
    send,
    set_arguments,
    start_watching,
    watch_answer,
)
from tests.frontend.conftest import User, sign_in
from tests.frontend.shots import screenshot_path
from tests.support import LisaServer

MODEL = "gemma3-270m"


def newest_session(user: User) -> dict:
    sessions = user.api.get("/api/sessions").json()["data"]
    assert sessions, "the app created no session"
    return user.api.get(f"/api/sessions/{sessions[0]['id']}").json()


def test_a_signed_out_browser_is_sent_to_sign_in(page: Page, lisa: LisaServer) -> None:
    page.goto(lisa.url + "/ui/")
    page.wait_for_url("**/login")
    expect(page.locator("input[name=token]")).to_be_visible()
    # The app's own API (its config, its event routes) answers the backend's JSON 401, not a redirect.
    for path in ("/ui/config", "/ui/gradio_api/info"):
        resp = httpx.get(lisa.url + path)
        assert resp.status_code == 401 and "detail" in resp.json(), (path, resp.status_code)
    # A session that ended signs nothing in either.
    resp = httpx.get(lisa.url + "/ui/", headers={"Accept": "text/html"}, cookies={"lisa_session": "ended"})
    assert resp.status_code == 303 and resp.headers["location"] == "/login"


def test_sign_in_then_an_answer_streams_with_its_metadata(page: Page, lisa: LisaServer, user: User) -> None:
    sign_in(page, lisa, user.token)
    expect(page.locator("#lisa-user")).to_contain_text(user.name)
    choose_model(page, MODEL)
    set_arguments(page, max_tokens=80)
    bots = bot_messages(page)
    expect(bots).to_have_count(0)
    start_watching(page)
    send(page, "Write three sentences about the sea.")
    expect(bots).to_have_count(1)  # first the answer's bubble appears ...
    stages = watch_answer(page, until="tokens")  # ... then its text grows, then the metadata line comes
    growing = [s for s in stages if s.strip() and "tokens" not in s]
    assert len(growing) >= 2, f"the answer did not stream (stages seen: {stages!r})"
    final = stages[-1]
    assert MODEL in final and "→" in final
    session = newest_session(user)
    answer = session["messages"][-1]
    assert answer["role"] == "assistant" and answer["status"] == "complete"
    assert answer["metadata"]["arguments"] == {"max_tokens": 80}  # the argument set, and no blank one, was sent
    assert answer["content"].strip()[:20] in final
    # The sidebar lists the new chat under its question.
    expect(page.locator("#lisa-sessions")).to_contain_text("Write three sentences about the sea.")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=screenshot_path("chat.png"), full_page=True)


def test_stop_ends_the_stream_and_the_backend_keeps_the_partial_answer(
    page: Page, lisa: LisaServer, user: User
) -> None:
    sign_in(page, lisa, user.token)
    choose_model(page, MODEL)
    set_arguments(page, max_tokens=600)
    send(page, "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,")
    expect(bot_messages(page)).to_have_count(1)
    page.wait_for_function(
        "sel => { const b = document.querySelectorAll(sel); return b.length && b[b.length-1].innerText.length > 15 }",
        arg='#lisa-chatbot [data-testid="bot"]',
    )
    page.click("#lisa-stop")
    time.sleep(0.5)
    shown = last_bot_text(page)
    time.sleep(2.0)
    assert last_bot_text(page) == shown, "the answer kept growing after Stop"
    assert "tokens" not in shown  # it never finished
    deadline = time.monotonic() + 15
    while True:
        answer = newest_session(user)["messages"][-1]
        if (answer["role"] == "assistant" and answer["status"] == "incomplete") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert answer["status"] == "incomplete", answer
    assert answer["content"].strip() and len(answer["content"]) < 4000


def test_a_backend_refusal_appears_as_a_readable_message(page: Page, lisa: LisaServer, user: User) -> None:
    sign_in(page, lisa, user.token)
    choose_model(page, MODEL)
    set_arguments(page, stop_words="a, b, c, d, e")  # the backend allows 4 stop words
    send(page, "Hello")
    expect(bot_messages(page)).to_have_count(1)
    expect(bot_messages(page).first).to_contain_text("Error:")
    text = last_bot_text(page)
    assert "stop" in text and "at most 4" in text, text
    assert "Traceback" not in page.content()


def test_the_sessions_sidebar_opens_renames_searches_and_deletes(page: Page, lisa: LisaServer, user: User) -> None:
    first = user.api.post("/api/sessions", json={"title": "Quokka facts", "model": MODEL}).json()
    user.api.post("/api/sessions", json={"title": "Another chat", "model": MODEL})
    sign_in(page, lisa, user.token)
    sidebar = page.locator("#lisa-sessions")
    expect(sidebar).to_contain_text("Quokka facts")
    expect(sidebar).to_contain_text("Another chat")
    page.fill("#lisa-search textarea", "quokka")
    page.keyboard.press("Enter")
    expect(sidebar).not_to_contain_text("Another chat")
    sidebar.get_by_text("Quokka facts").click()
    page.get_by_text("This chat").click()
    expect(page.locator("#lisa-title textarea")).to_have_value("Quokka facts")
    page.fill("#lisa-title textarea", "Quokka notes")
    page.click("#lisa-rename")
    expect(sidebar).to_contain_text("Quokka notes")
    assert user.api.get(f"/api/sessions/{first['id']}").json()["title"] == "Quokka notes"
    page.click("#lisa-delete")
    expect(sidebar).not_to_contain_text("Quokka notes")
    assert user.api.get(f"/api/sessions/{first['id']}").status_code == 404

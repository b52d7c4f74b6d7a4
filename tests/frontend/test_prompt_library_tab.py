"""The Prompt Library tab in a real browser: create a persona, find it, use it in a chat, edit it, delete it."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.frontend.chat_page import bot_messages, choose_model, send, set_arguments, watch_answer
from tests.frontend.conftest import User, sign_in
from tests.frontend.shots import screenshot_path
from tests.support import LisaServer


def open_tab(page: Page, name: str) -> None:
    # Gradio renders each tab button twice (the second for its overflow menu): the visible one.
    page.locator('button[role="tab"]', has_text=name).locator("visible=true").first.click()


def pick(page: Page, dropdown: str, option: str) -> None:
    page.click(f"{dropdown} input")
    page.get_by_role("option", name=option).click()


def test_create_a_persona_and_use_it_in_a_chat(page: Page, lisa: LisaServer, user: User) -> None:
    sign_in(page, lisa, user.token)
    open_tab(page, "Prompt Library")
    page.fill("#lisa-pt-title textarea", "Ship captain")
    page.fill("#lisa-pt-body textarea", "You are {{who}}, captain of a ship. Answer in one sentence.")
    page.click("#lisa-pt-save")
    expect(page.locator("#lisa-pt-info")).to_contain_text("Revision 1")
    expect(page.locator("#lisa-pt-info")).to_contain_text("{{who}}")
    expect(page.locator("#lisa-pt-list")).to_contain_text("Ship captain (persona)")
    (created,) = user.api.get("/api/prompt-templates", params={"scope": "mine"}).json()["data"]
    assert created["kind"] == "persona" and created["variables"] == ["who"]
    page.screenshot(path=screenshot_path("prompt-library.png"), full_page=True)

    # Search finds it; a word it lacks finds nothing.
    page.fill("#lisa-pt-search textarea", "walrus")
    page.keyboard.press("Enter")
    expect(page.locator("#lisa-pt-list")).not_to_contain_text("Ship captain")
    page.fill("#lisa-pt-search textarea", "captain")
    page.keyboard.press("Enter")
    expect(page.locator("#lisa-pt-list")).to_contain_text("Ship captain")

    # Use it: without its variable the backend refuses, naming it; with it the answer streams.
    open_tab(page, "Chat")
    choose_model(page, "gemma3-270m")
    page.get_by_text("Persona and directives").click()
    pick(page, "#lisa-persona", "Ship captain")
    set_arguments(page, max_tokens=12)
    send(page, "Who are you?")
    expect(bot_messages(page).last).to_contain_text("Error:")
    expect(bot_messages(page).last).to_contain_text("who")
    page.fill("#lisa-variables textarea", "who = Anne Bonny")
    send(page, "Who are you?")
    expect(bot_messages(page)).to_have_count(2)
    watch_answer(page, until="tokens")
    session = user.api.get("/api/sessions").json()["data"][0]
    answer = user.api.get(f"/api/sessions/{session['id']}").json()["messages"][-1]
    assert answer["role"] == "assistant" and answer["status"] == "complete"

    # Edit (a new revision), then delete.
    open_tab(page, "Prompt Library")
    page.locator("#lisa-pt-list").get_by_text("Ship captain (persona)").click()
    expect(page.locator("#lisa-pt-title textarea")).to_have_value("Ship captain")
    page.fill("#lisa-pt-title textarea", "Ship captain, retired")
    page.click("#lisa-pt-save")
    expect(page.locator("#lisa-pt-info")).to_contain_text("Revision 2")
    assert user.api.get(f"/api/prompt-templates/{created['id']}").json()["title"] == "Ship captain, retired"
    page.click("#lisa-pt-delete")
    expect(page.locator("#lisa-pt-list")).not_to_contain_text("Ship captain")
    assert user.api.get(f"/api/prompt-templates/{created['id']}").status_code == 404

"""Feature toggles hide their parts of the app for a plain user (the backend still enforces them), and the system
banner shows: both read from /api/configuration when the page loads, with no restart of anything."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from playwright.sync_api import Page, expect

from tests.frontend.conftest import User, sign_in
from tests.support import LisaServer

TOGGLES = ["edit_kwargs", "view_meta_data", "delete_session_history", "show_prompt_template_library"]


@contextmanager
def restricted(admin: httpx.Client) -> Iterator[None]:
    banner = {"enabled": True, "text": "Maintenance tonight at 22:00", "background_color": "#ffcc00"}
    resp = admin.patch("/api/configuration", json={"features": dict.fromkeys(TOGGLES, False), "banner": banner})
    assert resp.status_code == 200, resp.text
    try:
        yield
    finally:
        off = {"enabled": False, "text": ""}
        restore = admin.patch("/api/configuration", json={"features": dict.fromkeys(TOGGLES), "banner": off})
        assert restore.status_code == 200, restore.text


def test_toggles_hide_their_parts_and_the_banner_shows(
    page: Page, lisa: LisaServer, user: User, admin: httpx.Client
) -> None:
    # An answer with metadata, made before the toggles change (the stored metadata stays; the toggle hides it).
    session = user.api.post("/api/sessions", json={"title": "Earlier chat", "model": "gemma3-270m"}).json()
    turn_body = {"content": "Hi", "arguments": {"max_tokens": 4}}
    with user.api.stream("POST", f"/api/sessions/{session['id']}/messages", json=turn_body) as turn:
        assert turn.status_code == 200 and "event: done" in "".join(turn.iter_text())
    with restricted(admin):
        check_restricted_page(page, lisa, user, session["id"])


def check_restricted_page(page: Page, lisa: LisaServer, user: User, session_id: str) -> None:
    sign_in(page, lisa, user.token)
    expect(page.locator("#lisa-banner")).to_contain_text("Maintenance tonight at 22:00")
    expect(page.locator("#lisa-arguments")).to_be_hidden()
    expect(page.locator("#lisa-delete")).to_be_hidden()
    expect(page.locator("#lisa-prompts")).to_be_hidden()  # the persona pickers read the closed library
    page.locator("#lisa-sessions").get_by_text("Earlier chat").click()
    expect(page.locator('#lisa-chatbot [data-testid="bot"]')).to_have_count(1)
    assert "tokens" not in page.locator('#lisa-chatbot [data-testid="bot"]').inner_text()
    # The library's content is hidden (its tab button stays: Gradio 6.31 did not hide it in this app).
    page.locator('button[role="tab"]', has_text="Prompt Library").locator("visible=true").first.click()
    expect(page.locator("#lisa-pt-off")).to_be_visible()
    expect(page.locator("#lisa-pt-library")).to_be_hidden()
    # The backend refuses what the app hides, whoever calls it.
    assert user.api.delete(f"/api/sessions/{session_id}").status_code == 403


def test_admins_are_exempt_from_toggles(page: Page, lisa: LisaServer, admin: httpx.Client) -> None:
    with restricted(admin):
        sign_in(page, lisa, lisa.token)
        expect(page.locator("#lisa-banner")).to_contain_text("Maintenance tonight")
        expect(page.locator("#lisa-arguments")).to_be_visible()
        page.get_by_text("This chat").click()
        expect(page.locator("#lisa-delete")).to_be_visible()
        page.locator('button[role="tab"]', has_text="Prompt Library").locator("visible=true").first.click()
        expect(page.locator("#lisa-pt-library")).to_be_visible()
        expect(page.locator("#lisa-pt-off")).to_be_hidden()

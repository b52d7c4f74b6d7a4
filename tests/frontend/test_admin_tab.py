"""The Admin tab: only admins see it (the backend refuses the rest anyway); an admin adds a model through the wizard
and watches it go InService and, disabled, Stopped; a toggle switched off there hides its feature from a signed-in
user on the next page load, with no restart."""

from __future__ import annotations

import secrets

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.frontend.admin_page import ADMIN_TAB, choose, model_row, open_admin
from tests.frontend.conftest import User, sign_in
from tests.frontend.shots import screenshot_path
from tests.support import LisaServer


def test_a_plain_user_sees_no_admin_tab_and_the_backend_refuses_admin_routes(
    page: Page, lisa: LisaServer, user: User
) -> None:
    sign_in(page, lisa, user.token)
    expect(page.locator('button[role="tab"]', has_text="Chat").first).to_be_visible()
    expect(page.locator(ADMIN_TAB).locator("visible=true")).to_have_count(0)
    expect(page.locator("#lisa-am-models")).to_be_hidden()
    for path in ("/api/configuration/history", "/api/audit", "/api/usage", "/api/limits"):
        assert user.api.get(path).status_code == 403, path
    refused = user.api.post("/api/models", json={"id": "x", "type": "textgen", "hosting": "internal"})
    assert refused.status_code == 403


def test_admin_adds_an_internal_model_sees_it_in_service_then_disables_it(
    page: Page, lisa: LisaServer, admin: httpx.Client
) -> None:
    upstream = admin.get("/api/models/gemma3-270m").json()["base_url"]  # the session's llama.cpp server
    model_id = f"ui-wizard-{secrets.token_hex(3)}"
    sign_in(page, lisa, lisa.token)
    open_admin(page, "Models")
    expect(page.locator("#lisa-am-models")).to_contain_text("gemma3-270m")  # the live list polled
    # Checked before it is sent: an internal model needs its URL.
    page.fill("#lisa-am-id textarea, #lisa-am-id input", model_id)
    page.click("#lisa-am-submit")
    expect(page.locator("#lisa-am-result")).to_contain_text("Not sent: An internal model needs the base URL")
    assert admin.get(f"/api/models/{model_id}").status_code == 404
    page.fill("#lisa-am-base-url input, #lisa-am-base-url textarea", upstream)
    page.click("#lisa-am-submit")
    expect(page.locator("#lisa-am-result")).to_contain_text(f"Added {model_id}")
    expect(model_row(page, model_id)).to_contain_text("InService", timeout=30_000)
    page.click("#lisa-am-submit")  # the same id again
    expect(page.locator("#lisa-am-result")).to_contain_text("The server refused (409)")
    try:
        choose(page, "#lisa-am-selected", model_id)
        expect(page.locator("#lisa-am-events")).to_contain_text("InService", timeout=15_000)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=screenshot_path("admin.png"))
        page.click("#lisa-am-disable")
        expect(page.locator("#lisa-am-action")).to_contain_text(f"Disabling {model_id}")
        expect(model_row(page, model_id)).to_contain_text("Stopped", timeout=30_000)
        assert admin.get(f"/api/models/{model_id}").json()["status"] == "Stopped"
    finally:
        admin.delete(f"/api/models/{model_id}")


def test_a_toggle_switched_off_hides_the_feature_on_the_users_next_page_load(
    page: Page, chromium: Browser, lisa: LisaServer, user: User, admin: httpx.Client
) -> None:
    user_context = chromium.new_context(viewport={"width": 1280, "height": 900})
    user_page = user_context.new_page()
    try:
        sign_in(user_page, lisa, user.token)
        expect(user_page.locator("#lisa-arguments")).to_be_visible()
        sign_in(page, lisa, lisa.token)
        open_admin(page, "Configuration")
        toggle = page.locator("#lisa-ac-toggles label", has_text="edit_kwargs:")
        expect(toggle.locator("input")).to_be_checked()
        toggle.click()
        page.click("#lisa-ac-save")
        expect(page.locator("#lisa-ac-result")).to_contain_text("Saved: version")
        expect(page.locator("#lisa-ac-history")).to_contain_text("features.edit_kwargs")
        assert admin.get("/api/configuration").json()["features"]["edit_kwargs"]["enabled"] is False
        user_page.reload()
        user_page.wait_for_function("document.querySelector('#lisa-user')?.innerText.includes('Signed in as')")
        expect(user_page.locator("#lisa-arguments")).to_be_hidden()
    finally:
        admin.patch("/api/configuration", json={"features": {"edit_kwargs": None}})
        user_context.close()


def test_admin_creates_a_token_shown_once_finds_it_in_the_audit_log_and_sees_usage(
    page: Page, lisa: LisaServer, admin: httpx.Client
) -> None:
    answer = admin.post("/v1/chat/completions", json={"model": "gemma3-270m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})  # fmt: skip
    assert answer.status_code == 200, answer.text
    owner = f"ui-tok-{secrets.token_hex(3)}"
    sign_in(page, lisa, lisa.token)
    open_admin(page, "Usage")
    expect(page.locator("#lisa-au-summary")).to_contain_text("requests")
    assert "No metered traffic" not in page.locator("#lisa-au-summary").inner_text()
    open_admin(page, "Tokens")
    page.fill("#lisa-at-owner input, #lisa-at-owner textarea", owner)
    page.fill("#lisa-at-name input, #lisa-at-name textarea", "laptop")
    page.click("#lisa-at-create")
    expect(page.locator("#lisa-at-result")).to_contain_text(f"Created token laptop for {owner}")
    secret = page.locator("#lisa-at-secret input, #lisa-at-secret textarea").first.input_value()
    assert secret and lisa.client(secret).get("/api/users/me").json()["username"] == owner
    expect(page.locator("#lisa-at-list")).to_contain_text(owner)
    assert secret not in page.locator("#lisa-at-list").inner_text()
    open_admin(page, "Audit log")
    page.fill("#lisa-aa-action input, #lisa-aa-action textarea", "token.create")
    page.click("#lisa-aa-search")
    expect(page.locator("#lisa-aa-list")).to_contain_text("token.create")
    expect(page.locator("#lisa-aa-list")).not_to_contain_text("model.create")


def test_a_user_creates_an_own_api_token_shown_once(page: Page, lisa: LisaServer, user: User) -> None:
    sign_in(page, lisa, user.token)
    page.locator('button[role="tab"]', has_text="API tokens").locator("visible=true").first.click()
    expect(page.locator("#lisa-mt-content")).to_be_visible()
    page.fill("#lisa-mt-name input, #lisa-mt-name textarea", "my-script")
    page.click("#lisa-mt-create")
    expect(page.locator("#lisa-mt-result")).to_contain_text("Created my-script")
    secret = page.locator("#lisa-mt-secret input, #lisa-mt-secret textarea").first.input_value()
    assert lisa.client(secret).get("/api/users/me").json()["username"] == user.name
    expect(page.locator("#lisa-mt-list")).to_contain_text("my-script")
    assert secret not in page.locator("#lisa-mt-list").inner_text()

"""Browser tests: Playwright driving Debian's chromium (headless) against the app the session's LISA serves at /ui.

Chromium comes from the system (scripts/install.sh installs it when missing); Playwright never downloads one."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.support import LisaServer

CHROMIUM = Path("/usr/bin/chromium")
# Playwright's assertions wait 5 s by default (the context's default timeout does not apply to them): on the 2-core
# CI machine, with the suite's llama.cpp answering other tests, a page load or a stream took longer than that.
expect.set_options(timeout=15_000)


@dataclass
class User:
    name: str
    token: str
    api: httpx.Client  # the same user through the API, to check what the app did


# Module-scoped, not session-scoped: while Playwright's sync API is started, its event loop counts as running in
# this thread, so the async tests (pytest-asyncio) and asyncio.run() of other modules would fail.
@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install.sh (it installs Debian's chromium)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def chromium(playwright_driver: Playwright) -> Iterator[Browser]:
    browser = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    yield browser
    browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


def new_user(admin: httpx.Client, lisa: LisaServer, prefix: str = "ui") -> User:
    name = f"{prefix}-{secrets.token_hex(3)}"
    resp = admin.post("/api/tokens", json={"name": name, "username": name})
    assert resp.status_code == 201, resp.text
    token = resp.json()["token"]
    return User(name, token, lisa.client(token))


@pytest.fixture
def user(admin: httpx.Client, lisa: LisaServer) -> Iterator[User]:
    u = new_user(admin, lisa)
    yield u
    u.api.close()


def sign_in(page: Page, lisa: LisaServer, token: str) -> None:
    """As a person does: open the app, get sent to the sign-in page, paste the token, land in the app."""
    page.goto(lisa.url + "/ui/")
    page.wait_for_url("**/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/")
    page.wait_for_selector("#lisa-input textarea")
    try:
        page.wait_for_function("document.querySelector('#lisa-user')?.innerText.includes('Signed in as')")
    except PlaywrightTimeout:  # say what the page showed and what the server logged, for the next one to look at
        shown = page.locator("#lisa-user").inner_text(timeout=1000)
        toasts = page.locator(".toast-body").all_inner_texts()
        raise AssertionError(
            f"the page never said who is signed in: #lisa-user {shown!r}, messages {toasts!r}; "
            f"the server's log ends:\n{lisa.proc.log_tail(6000)}"
        ) from None

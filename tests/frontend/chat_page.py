"""The chat tab as the tests drive it (selectors in one place)."""

from __future__ import annotations

import time

from playwright.sync_api import Locator, Page

BOT = '#lisa-chatbot [data-testid="bot"]'
USER = '#lisa-chatbot [data-testid="user"]'


def bot_messages(page: Page) -> Locator:
    return page.locator(BOT)


def choose_model(page: Page, model: str) -> None:
    """Picks ``model`` in the model picker once the page has filled it (the default it shows depends on what else
    the session's server has registered by then: other test modules add text models)."""
    page.wait_for_function("document.querySelector('#lisa-model input')?.value", timeout=60_000)
    if page.locator("#lisa-model input").input_value() != model:
        page.click("#lisa-model input")
        page.get_by_role("option", name=model, exact=True).click()
    page.wait_for_function("m => document.querySelector('#lisa-model input')?.value === m", arg=model, timeout=30_000)


def set_arguments(page: Page, max_tokens: int | None = None, stop_words: str | None = None) -> None:
    page.get_by_text("Model arguments").click()
    if max_tokens is not None:
        page.get_by_label("Max tokens").fill(str(max_tokens))
    if stop_words is not None:
        page.get_by_label("Stop words (comma-separated, up to 4)").fill(stop_words)


def send(page: Page, text: str) -> None:
    page.fill("#lisa-input textarea", text)
    page.keyboard.press("Enter")


def last_bot_text(page: Page) -> str:
    bots = bot_messages(page)
    return bots.nth(bots.count() - 1).inner_text() if bots.count() else ""


def watch_answer(page: Page, until: str, timeout_s: float = 90) -> list[str]:
    """The last answer's text, sampled every 30 ms until it contains ``until``: the stages a user saw."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = last_bot_text(page)
        if not seen or text != seen[-1]:
            seen.append(text)
        if until in text:
            return seen
        time.sleep(0.03)
    raise AssertionError(f"the answer never showed {until!r}; it went {seen[-5:]!r}")

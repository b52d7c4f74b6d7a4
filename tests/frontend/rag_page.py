"""The Documents and RAG admin tabs as the tests drive them (selectors in one place)."""

from __future__ import annotations

from playwright.sync_api import Page, expect


def open_tab(page: Page, name: str) -> None:
    # Gradio renders each tab button twice (the second for its overflow menu): the visible one.
    page.locator('button[role="tab"]', has_text=name).locator("visible=true").first.click()


def pick(page: Page, dropdown: str, option: str) -> None:
    page.click(f"{dropdown} input")
    page.get_by_role("option", name=option).click()


def fill(page: Page, field: str, text: str) -> None:
    page.fill(f"{field} textarea, {field} input[type=text], {field} input[type=number]", text)


def toast(page: Page, text: str) -> None:
    """A Gradio message (error or info) containing ``text``."""
    expect(page.locator(".toast-body", has_text=text).first).to_be_visible()


def screenshot(page: Page, path: str) -> None:
    """The page without the messages (toasts) that happen to be showing over it."""
    style = page.add_style_tag(content=".toast-wrap{display:none !important}")
    page.screenshot(path=path, full_page=True)
    style.evaluate("node => node.remove()")

"""The Admin tab as the tests drive it (selectors in one place)."""

from __future__ import annotations

from playwright.sync_api import Locator, Page, expect

ADMIN_TAB = 'button[role="tab"][data-tab-id="admin"]'


def open_admin(page: Page, panel: str) -> None:
    page.locator(ADMIN_TAB).locator("visible=true").first.click()
    page.get_by_role("tab", name=panel, exact=True).locator("visible=true").first.click()


def model_row(page: Page, model_id: str) -> Locator:
    return page.locator("#lisa-am-models tr", has_text=model_id)


def choose(page: Page, dropdown: str, value: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=value, exact=True).click()
    expect(page.locator(f"{dropdown} input")).to_have_value(value)

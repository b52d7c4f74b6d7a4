"""The chat tab as the tests drive it (selectors in one place)."""

from __future__ import annotations

from playwright.sync_api import Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

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


# Records, in the page, each text the last answer showed: a MutationObserver sees every update the browser renders,
# where sampling from Python (a round trip per sample, slow when the machine is loaded) could miss the middle ones.
RECORDER = """sel => {
  if (window.__lisaStages) return;
  const stages = window.__lisaStages = [];
  const note = () => {
    const bots = document.querySelectorAll(sel);
    const text = bots.length ? bots[bots.length - 1].innerText : '';
    if (!stages.length || stages[stages.length - 1] !== text) stages.push(text);
  };
  note();
  window.__lisaRecorder = new MutationObserver(note);
  window.__lisaRecorder.observe(document.querySelector('#lisa-chatbot'), {subtree: true, childList: true, characterData: true});
}"""
TAKE = """() => { const s = window.__lisaStages; window.__lisaRecorder.disconnect(); delete window.__lisaStages; return s; }"""


def start_watching(page: Page) -> None:
    """Records the last answer's texts from now on (call it before sending, to see every stage of the answer)."""
    page.evaluate(RECORDER, BOT)


def watch_answer(page: Page, until: str, timeout_s: float = 90) -> list[str]:
    """The texts the last answer showed (since ``start_watching``, or since now) until one contains ``until``: the
    stages a user saw."""
    start_watching(page)
    try:
        page.wait_for_function(
            "u => { const s = window.__lisaStages; return s.length && s[s.length - 1].includes(u) }",
            arg=until,
            timeout=timeout_s * 1000,
        )
    except PlaywrightTimeout:
        seen = page.evaluate("() => window.__lisaStages.slice(-5)")
        raise AssertionError(f"the answer never showed {until!r}; it went {seen!r}") from None
    stages: list[str] = page.evaluate(TAKE)
    return stages

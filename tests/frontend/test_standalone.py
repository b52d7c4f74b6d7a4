"""The app on its own (``python -m frontend --backend URL``) against the session's backend, in a real browser."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.frontend.chat_page import bot_messages, choose_model, send, set_arguments, watch_answer
from tests.frontend.conftest import User
from tests.support import LisaServer, Proc, free_port, start_process


@pytest.fixture(scope="module")
def standalone(lisa: LisaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    port = free_port()
    argv = [sys.executable, "-m", "frontend", "--backend", lisa.url, "--port", str(port)]
    log = Path(tmp_path_factory.mktemp("standalone")) / "app.log"
    proc = start_process(argv, port=port, log=log, deadline=90)
    yield proc
    proc.stop(signal.SIGTERM)


def test_standalone_app_signs_in_at_the_backend_and_chats(page: Page, standalone: Proc, user: User) -> None:
    assert httpx.get(standalone.url + "/ui/config").status_code == 401  # nobody signed in: Gradio refuses
    page.goto(standalone.url + "/ui/")
    page.wait_for_url(standalone.url + "/login")
    page.fill("input[name=token]", "lisa_not-a-token")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("invalid")  # the backend's own words
    page.fill("input[name=token]", user.token)
    page.click("button[type=submit]")
    page.wait_for_url(standalone.url + "/ui/")
    expect(page.locator("#lisa-user")).to_contain_text(user.name)
    choose_model(page, "gemma3-270m")
    set_arguments(page, max_tokens=12)
    send(page, "Say hello.")
    expect(bot_messages(page)).to_have_count(1)
    watch_answer(page, until="tokens")
    sessions = user.api.get("/api/sessions").json()["data"]
    assert [s["title"] for s in sessions] == ["Say hello."]  # made at the backend, as this user
    # Signing out ends the backend session: the app's cookie no longer opens anything.
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "lisa_session")
    page.goto(standalone.url + "/logout")
    page.click("button[type=submit]")
    page.wait_for_url(standalone.url + "/login")
    resp = httpx.get(standalone.url + "/ui/config", cookies={"lisa_session": cookie})
    assert resp.status_code == 401

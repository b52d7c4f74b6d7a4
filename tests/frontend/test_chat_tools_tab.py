"""The chat tab's MCP tools (approve and deny in the page), image generation and the Compare tab, in a real browser.

gemma3-270m cannot ask for tools, so tool turns use the scripted tool-calling upstream and the real MCP test server
of the backend's tool-loop tests; images come from the real OpenAI-wire image server of the backend's image tests;
Compare puts gemma3-270m next to the capture server (an upstream that always answers "captured")."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.backend.chat.context_helpers import registered_model
from tests.frontend.chat_page import last_bot_text, send
from tests.frontend.conftest import User, sign_in
from tests.frontend.shots import screenshot_path
from tests.support import LisaServer, Proc, registered_mcp_server, start_module

CHATBOT = "#lisa-chatbot"


@pytest.fixture(scope="module")
def tool_upstream(session_tmp: Path) -> Iterator[Proc]:
    proc = start_module("tests.servers.tool_upstream", session_tmp)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def tools_server(admin: httpx.Client, session_tmp: Path) -> Iterator[dict[str, Any]]:
    with registered_mcp_server(admin, session_tmp, f"ui-tools-{secrets.token_hex(2)}") as server:
        yield server


@pytest.fixture(scope="module")
def echo_model(admin: httpx.Client, tool_upstream: Proc) -> Iterator[str]:
    with registered_model(admin, "ui-once-echo", type="textgen", hosting="internal",
                          base_url=tool_upstream.url + "/v1", upstream_model="once-echo") as model_id:  # fmt: skip
        yield model_id


@pytest.fixture(scope="module")
def painter(admin: httpx.Client, image_server: Proc) -> Iterator[str]:
    with registered_model(admin, "ui-painter", type="imagegen", hosting="internal",
                          base_url=image_server.url + "/v1") as model_id:  # fmt: skip
        yield model_id


@pytest.fixture(scope="module")
def parrot(admin: httpx.Client, session_tmp: Path) -> Iterator[str]:
    proc = start_module("tests.servers.capture_server", session_tmp)
    with registered_model(admin, "ui-parrot", type="textgen", hosting="internal",
                          base_url=proc.url + "/v1") as model_id:  # fmt: skip
        yield model_id
    proc.stop()


def open_chat_with(page: Page, lisa: LisaServer, user: User, model: str, title: str) -> str:
    """A session of ``model`` made through the API, opened from the sidebar (it brings its model along)."""
    session = user.api.post("/api/sessions", json={"title": title, "model": model}).json()
    sign_in(page, lisa, user.token)
    page.locator("#lisa-sessions").get_by_text(title).click()
    page.wait_for_function("m => document.querySelector('#lisa-model input')?.value === m", arg=model)
    return str(session["id"])


def pick_tool(page: Page, tool: str) -> None:
    page.locator("#lisa-tools").get_by_text("Tools", exact=True).click()
    page.locator("#lisa-tool-pick").get_by_text(tool).click()


def test_the_tools_picker_is_hidden_without_tools(page: Page, lisa: LisaServer, user: User) -> None:
    """No MCP server gives this module's user any tool before ``tools_server`` starts: no Tools picker."""
    listed = user.api.get("/api/mcp/tools").json()
    if listed["tools"]:
        pytest.skip("another module left a global MCP server registered")
    sign_in(page, lisa, user.token)
    expect(page.locator("#lisa-input textarea")).to_be_visible()
    expect(page.locator("#lisa-tools")).to_be_hidden()


def test_safe_mode_approve_runs_the_tool_and_deny_tells_the_model(
    page: Page, lisa: LisaServer, user: User, echo_model: str, tools_server: dict[str, Any]
) -> None:
    session_id = open_chat_with(page, lisa, user, echo_model, "Tool chat")
    pick_tool(page, "echo")
    chat = page.locator(CHATBOT)
    # Approve: the call waits with its arguments and two buttons; approving runs it and the answer uses the result.
    send(page, "Say hello through the tool")
    expect(chat).to_contain_text("waiting for your approval")
    expect(chat).to_contain_text('{"text": "hello tools"}', use_inner_text=True)  # the arguments, in view
    expect(chat.get_by_role("button", name="Deny")).to_have_count(1)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=screenshot_path("chat-tools.png"), full_page=True)
    chat.get_by_role("button", name="Approve").click()
    expect(chat).to_contain_text("echo: done")
    expect(chat).to_contain_text("tool said: hello tools")
    expect(chat.get_by_role("button", name="Approve")).to_have_count(0)
    # Deny: the page says so and the model reads the denial.
    send(page, "Again, please")
    expect(chat.get_by_role("button", name="Deny")).to_have_count(1)
    chat.get_by_role("button", name="Deny").click()
    expect(chat).to_contain_text("echo: denied")
    expect(chat).to_contain_text("You denied this call")
    messages = user.api.get(f"/api/sessions/{session_id}").json()["messages"]
    answers = [m for m in messages if m["role"] == "assistant"]
    assert [a["metadata"]["tool_calls"][0]["approved"] for a in answers] == [True, False]
    assert answers[0]["content"] == "tool said: hello tools"
    assert "denied" in answers[1]["content"]
    assert "denied" in last_bot_text(page)


def test_an_image_model_draws_into_the_chat_through_the_session_image_route(
    page: Page, lisa: LisaServer, user: User, painter: str
) -> None:
    sign_in(page, lisa, user.token)
    page.locator("#lisa-images").get_by_text("Image generation").click()
    page.click("#lisa-image-model input")
    page.get_by_role("option", name=painter).click()
    page.fill("#lisa-image-prompt textarea", "a lighthouse at dusk")
    page.click("#lisa-generate")
    image = page.locator(f"{CHATBOT} img[src*='/api/sessions/']")
    expect(image).to_have_count(1)
    page.wait_for_function(
        "() => { const i = document.querySelector(\"#lisa-chatbot img[src*='/api/sessions/']\");"
        " return i && i.complete && i.naturalWidth === 512 }"
    )
    src = image.get_attribute("src") or ""
    assert "data:" not in src and "/images/img_" in src, src
    sessions = user.api.get("/api/sessions").json()["data"]
    images = user.api.get(f"/api/sessions/{sessions[0]['id']}/images").json()["data"]
    assert [i["url"] for i in images] == [src[src.index("/api/") :]]
    assert images[0]["prompt"] == "a lighthouse at dusk"


def test_compare_streams_two_models_side_by_side(page: Page, lisa: LisaServer, user: User, parrot: str) -> None:
    sign_in(page, lisa, user.token)
    page.locator('button[role="tab"]', has_text="Compare").locator("visible=true").first.click()
    for model in ("gemma3-270m", parrot):
        page.click("#lisa-compare-models input")
        page.get_by_role("option", name=model).click()
    page.keyboard.press("Escape")
    page.fill("#lisa-compare-max-tokens textarea, #lisa-compare-max-tokens input", "24")
    page.fill("#lisa-compare-input textarea", "Name a colour.")
    page.click("#lisa-compare-send")
    left, right = page.locator("#lisa-compare-0"), page.locator("#lisa-compare-1")
    expect(left).to_contain_text("gemma3-270m")
    expect(right).to_contain_text(parrot)
    expect(right).to_contain_text("captured")
    expect(left).to_contain_text("tokens", timeout=90_000)  # the metadata line ends a finished answer
    expect(right).to_contain_text("tokens")
    expect(page.locator("#lisa-compare-2")).to_be_hidden()
    lbox, rbox = left.bounding_box(), right.bounding_box()
    assert lbox and rbox and rbox["x"] > lbox["x"] + lbox["width"] / 2, (lbox, rbox)  # side by side
    assert abs(rbox["y"] - lbox["y"]) < 5
    # Each model answered in a session of its own, with the max tokens set.
    sessions = {s["title"]: s["id"] for s in user.api.get("/api/sessions").json()["data"]}
    for model in ("gemma3-270m", parrot):
        [session_id] = [i for t, i in sessions.items() if t.startswith(f"Compare · {model}")]
        answer = user.api.get(f"/api/sessions/{session_id}").json()["messages"][-1]
        assert answer["role"] == "assistant" and answer["status"] == "complete"
        assert answer["metadata"]["model"] == model and answer["metadata"]["arguments"] == {"max_tokens": 24}
    page.screenshot(path=screenshot_path("compare.png"), full_page=True)

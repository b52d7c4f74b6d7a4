"""The MCP tool loop of a chat turn, through the running server: a scripted upstream that asks for tool calls
(tests/servers/tool_upstream.py, registered as internal models) and the real MCP test server
(tests/servers/mcp_tools.py over streamable HTTP, registered as a global server)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backend.chat.helpers import Event, Turn, new_session, new_user, send, streaming
from tests.backend.chat.test_chat_stream import final_answer
from tests.support import LisaServer, Proc, registered_mcp_server, start_module


@pytest.fixture(scope="module")
def upstream(session_tmp: Path) -> Iterator[Proc]:
    proc = start_module("tests.servers.tool_upstream", session_tmp)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def tools_server(admin: httpx.Client, session_tmp: Path) -> Iterator[dict[str, Any]]:
    with registered_mcp_server(admin, session_tmp, "loop-tools") as server:
        yield server


@pytest.fixture(scope="module")
def models(admin: httpx.Client, upstream: Proc) -> Iterator[dict[str, str]]:
    tag = secrets.token_hex(3)
    found = {b: f"tools-{b}-{tag}" for b in ("once-add", "once-echo", "once-fail", "always-echo")}
    for behaviour, model in found.items():
        body = {"id": model, "type": "textgen", "hosting": "internal", "base_url": upstream.url + "/v1",
                "upstream_model": behaviour}  # fmt: skip
        resp = admin.post("/api/models", json=body)
        assert resp.status_code == 201, resp.text
    yield found
    for model in found.values():
        admin.delete(f"/api/models/{model}")


@pytest.fixture
def user(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "tooler") as client:
        yield client


def captured(upstream: Proc) -> list[dict[str, Any]]:
    return list(httpx.get(upstream.url + "/_captured").json())


def test_autopilot_runs_the_call_and_the_answer_uses_its_result(
    user: httpx.Client, models: dict[str, str], tools_server: dict[str, Any], upstream: Proc
) -> None:
    session = new_session(user, model=models["once-add"])
    before = len(captured(upstream))
    turn = send(user, session["id"], {"content": "2+3?", "tools": [tools_server["id"]], "tool_mode": "autopilot"})
    assert turn.status == 200, turn.body
    assert "tool said: 5" in turn.text
    call = turn.one("tool_call")
    assert (call["server_id"], call["tool"], call["arguments"]) == (tools_server["id"], "add", {"a": 2, "b": 3})
    result = turn.one("tool_result")
    assert (result["result"], result["is_error"], result["approved"]) == ("5", False, True)
    assert not turn.named("tool_approval")
    assert turn.one("done")["status"] == "complete"
    sent = captured(upstream)[before:]
    assert len(sent) == 2
    assert any("__add" in t["function"]["name"] for t in sent[0]["tools"])
    assert sent[1]["messages"][-2]["tool_calls"][0]["function"]["name"].startswith("loop-tools__add")
    assert sent[1]["messages"][-1] == {"role": "tool", "tool_call_id": "call_" + str(before + 1), "content": "5"}
    answer = final_answer(user, session["id"], turn.one("done")["assistant_message_id"])
    assert answer["content"] == "tool said: 5"
    [record] = answer["metadata"]["tool_calls"]
    assert record["tool"] == "add" and record["server_id"] == tools_server["id"]
    assert record["arguments"] == {"a": 2, "b": 3} and record["result"] == "5"
    assert record["is_error"] is False and record["approved"] is True and record["duration_ms"] >= 0
    assert answer["metadata"]["usage"]["prompt_tokens"] == 20  # both model calls


def test_no_tools_selected_sends_none(
    user: httpx.Client, models: dict[str, str], tools_server: dict[str, Any], upstream: Proc
) -> None:
    session = new_session(user, model=models["once-add"])
    before = len(captured(upstream))
    turn = send(user, session["id"], {"content": "2+3?", "tools": []})
    assert turn.status == 200
    assert "tools" not in captured(upstream)[before]
    assert not turn.named("tool_call")  # the answer ends with a call nobody runs
    assert turn.one("done")["status"] == "complete"


def test_a_failing_tool_is_an_error_result_the_model_sees(
    user: httpx.Client, models: dict[str, str], tools_server: dict[str, Any]
) -> None:
    session = new_session(user, model=models["once-fail"])
    turn = send(user, session["id"], {"content": "go", "tools": [f"{tools_server['id']}/fail"],
                                      "tool_mode": "autopilot"})  # fmt: skip
    assert turn.status == 200, turn.body
    result = turn.one("tool_result")
    assert result["is_error"] is True and "boom" in result["result"]
    assert "tool said:" in turn.text and "boom" in turn.text
    answer = final_answer(user, session["id"], turn.one("done")["assistant_message_id"])
    assert answer["metadata"]["tool_calls"][0]["is_error"] is True


def until(events: Iterator[Event], name: str) -> Any:
    for event in events:
        if event.name == name:
            return event.data
    raise AssertionError(f"no {name} event")


def rest(events: Iterator[Event]) -> Turn:
    return Turn(200, list(events))


def test_safe_mode_waits_for_approval_and_runs_the_call(
    user: httpx.Client, admin: httpx.Client, lisa: LisaServer, models: dict[str, str], tools_server: dict[str, Any]
) -> None:
    session = new_session(user, model=models["once-echo"])
    body = {"content": "echo", "tools": [tools_server["id"]]}
    with streaming(user, session["id"], body) as events:
        waiting = until(events, "tool_approval")
        assert (waiting["tool"], waiting["arguments"]) == ("echo", {"text": "hello tools"})
        url = f"/api/sessions/{session['id']}/tool-calls/{waiting['call_id']}"
        with new_user(admin, lisa, "other") as other:
            assert other.post(url, json={"approve": True}).status_code == 404  # not theirs
        assert user.post(url, json={"approve": "yes please"}).status_code == 422
        assert user.post(f"/api/sessions/{session['id']}/tool-calls/nope", json={"approve": True}).status_code == 404
        assert user.post(url, json={"approve": True}).status_code == 204
        turn = rest(events)
    assert user.post(url, json={"approve": True}).status_code == 409  # decided already
    assert turn.one("tool_result")["result"] == "hello tools"
    assert turn.text == "tool said: hello tools"
    answer = final_answer(user, session["id"], turn.one("done")["assistant_message_id"])
    assert answer["metadata"]["tool_calls"][0]["approved"] is True


def test_an_approval_posted_to_another_process_runs_the_call(
    user: httpx.Client, lisa_peer: LisaServer, models: dict[str, str], tools_server: dict[str, Any]
) -> None:
    """The turn streams from the session's server; the decision goes to a second `lisa serve` on the same database."""
    session = new_session(user, model=models["once-echo"])
    token = user.headers["Authorization"].removeprefix("Bearer ")
    with streaming(user, session["id"], {"content": "echo", "tools": [tools_server["id"]]}) as events, \
            lisa_peer.client(token) as peer:  # fmt: skip
        waiting = until(events, "tool_approval")
        url = f"/api/sessions/{session['id']}/tool-calls/{waiting['call_id']}"
        assert peer.post(f"/api/sessions/{session['id']}/tool-calls/nope", json={"approve": True}).status_code == 404
        started = time.monotonic()
        assert peer.post(url, json={"approve": True}).status_code == 204
        turn = rest(events)
        took = time.monotonic() - started
        assert peer.post(url, json={"approve": False}).status_code == 409
    assert user.post(url, json={"approve": True}).status_code == 409  # decided, whichever process is asked
    assert turn.one("tool_call")["tool"] == "echo"
    assert turn.one("tool_result")["result"] == "hello tools"
    assert turn.text == "tool said: hello tools"
    print(f"approval on the peer to the end of the turn on the server: {took * 1000:.0f} ms")


def test_safe_mode_deny_tells_the_model(
    user: httpx.Client, models: dict[str, str], tools_server: dict[str, Any]
) -> None:
    session = new_session(user, model=models["once-echo"])
    with streaming(user, session["id"], {"content": "echo", "tools": [tools_server["id"]], "tool_mode": "safe"}) as ev:
        waiting = until(ev, "tool_approval")
        resp = user.post(f"/api/sessions/{session['id']}/tool-calls/{waiting['call_id']}", json={"approve": False})
        assert resp.status_code == 204
        turn = rest(ev)
    assert not turn.named("tool_call")
    assert "denied" in turn.text
    answer = final_answer(user, session["id"], turn.one("done")["assistant_message_id"])
    record = answer["metadata"]["tool_calls"][0]
    assert record["approved"] is False and record["is_error"] is True


def test_at_most_20_calls_a_turn(
    user: httpx.Client, models: dict[str, str], tools_server: dict[str, Any], upstream: Proc
) -> None:
    session = new_session(user, model=models["always-echo"])
    before = len(captured(upstream))
    turn = send(user, session["id"], {"content": "loop", "tools": [tools_server["id"]], "tool_mode": "autopilot"})
    assert turn.status == 200, turn.body
    assert len(turn.named("tool_call")) == 20
    results = turn.named("tool_result")
    assert len(results) == 21 and "limit of 20" in results[-1]["result"]
    assert turn.one("tool_limit")
    sent = captured(upstream)[before:]
    assert len(sent) == 22 and "tools" not in sent[-1]  # after the refusal: no tools offered
    assert "limit of 20" in json.dumps(sent[-1]["messages"][-1])
    answer = final_answer(user, session["id"], turn.one("done")["assistant_message_id"])
    assert len(answer["metadata"]["tool_calls"]) == 21


def test_bad_tool_fields_are_refused(user: httpx.Client, models: dict[str, str]) -> None:
    session = new_session(user, model=models["once-add"])
    for body in (
        {"content": "x", "tool_mode": "yolo"},
        {"content": "x", "tools": "all"},
        {"content": "x", "tools": [""]},
    ):
        assert send(user, session["id"], body).status == 422


@pytest.fixture
def limited(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    """A user allowed one request a minute."""
    name = f"limited-{secrets.token_hex(3)}"
    resp = admin.post("/api/tokens", json={"name": name, "username": name, "groups": []})
    assert resp.status_code == 201, resp.text
    assert admin.put(f"/api/limits/user/{name}", json={"rpm": 1}).status_code == 200
    with lisa.client(resp.json()["token"]) as client:
        yield client
    admin.delete(f"/api/limits/user/{name}")


def test_a_limit_before_the_answer_is_a_429_with_the_gateways_retry_after(
    limited: httpx.Client, models: dict[str, str]
) -> None:
    session = new_session(limited, model=models["once-echo"])
    assert send(limited, session["id"], {"content": "first", "tools": []}).status == 200
    refused = send(limited, session["id"], {"content": "second", "tools": []})
    assert refused.status == 429 and "limit" in refused.body["detail"].lower()
    with limited.stream("POST", f"/api/sessions/{session['id']}/messages", json={"content": "third"}) as resp:
        resp.read()
        assert resp.status_code == 429 and 1 <= int(resp.headers["retry-after"]) <= 60
        assert resp.json()["detail"] == refused.body["detail"]
    messages = limited.get(f"/api/sessions/{session['id']}").json()["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["first"]  # the refused turns left nothing


def test_a_limit_inside_the_tool_loop_is_an_error_event_with_retry_after(
    limited: httpx.Client, models: dict[str, str], tools_server: dict[str, Any]
) -> None:
    session = new_session(limited, model=models["once-add"])
    turn = send(limited, session["id"], {"content": "2+3?", "tools": [tools_server["id"]], "tool_mode": "autopilot"})
    assert turn.status == 200, turn.body
    assert turn.one("tool_result")["result"] == "5"  # the first model call ran; the second one is refused
    error = turn.one("error")
    assert error["status"] == 429 and 1 <= error["retry_after"] <= 60 and error["detail"]
    assert turn.one("done")["status"] == "error"

"""POST /api/sessions/{id}/messages through the running server: the local gemma model, and scripted upstreams
(tests/servers: faulty_upstream for ok/long/failing answers, capture_server to read the prompt that was sent)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.backend.chat.helpers import new_session, new_user, send, streaming, wait_for
from tests.support import LisaServer, Proc, start_module

GEMMA = "gemma3-270m"


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_module("tests.servers.capture_server", tmp_path_factory.mktemp("chat-capture"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def models(admin: httpx.Client, faulty_upstream: Proc, capture: Proc) -> Iterator[dict[str, str]]:
    """Model ids by behaviour, on the scripted upstreams (internal: the gateway's byte pass-through)."""
    tag = secrets.token_hex(3)
    found = {b: f"chat-{b}-{tag}" for b in ("ok", "long", "error-500", "stall-mid-stream")}
    bodies: list[dict[str, Any]] = [
        {"id": m, "base_url": faulty_upstream.url + "/v1", "upstream_model": b} for b, m in found.items()
    ]
    found["capture"] = f"chat-capture-{tag}"
    found["hidden"] = f"chat-hidden-{tag}"
    bodies += [
        {"id": found["capture"], "base_url": capture.url + "/v1"},
        {"id": found["hidden"], "base_url": faulty_upstream.url + "/v1", "upstream_model": "ok",
         "allowed_groups": ["chat-nobody"]},
    ]  # fmt: skip
    for body in bodies:
        resp = admin.post("/api/models", json={"type": "textgen", "hosting": "internal", **body})
        assert resp.status_code == 201, resp.text
    yield found
    for body in bodies:
        admin.delete(f"/api/models/{body['id']}")


@pytest.fixture
def user(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "chatter") as client:
        yield client


def final_answer(client: httpx.Client, session_id: str, message_id: str) -> dict[str, Any]:
    """The answer once its last write is in (latency_ms is set only then)."""

    def check() -> dict[str, Any] | None:
        session = client.get(f"/api/sessions/{session_id}").json()
        for message in session["messages"]:
            if message["id"] == message_id and "latency_ms" in message["metadata"]:
                return dict(message)
        return None

    return dict(wait_for(check, f"the final write of {message_id}"))


def usage_requests(client: httpx.Client, model: str, at_least: int) -> int:
    def check() -> int:
        rows = client.get("/api/usage/me").json()["rows"]
        count = sum(r["requests"] for r in rows if r["model"] == model)
        return count if count >= at_least else 0

    return int(wait_for(check, f"{at_least} metered requests of {model}"))


def test_gemma_streams_and_persists_both_messages(user: httpx.Client) -> None:
    session = new_session(user, title="gemma", model=GEMMA)
    turn = send(user, session["id"], {"content": "Say hello.", "arguments": {"max_tokens": 8, "temperature": 0}})
    assert turn.status == 200, turn.body
    names = [e.name for e in turn.events]
    assert names[:2] == ["user_message", "assistant_message"] and names[-2:] == ["usage", "done"]
    assert None in names  # OpenAI chunk deltas in between
    question, answer = turn.one("user_message"), turn.one("assistant_message")
    assert answer["parent_id"] == question["id"] and question["session_id"] == session["id"]
    assert all(c["object"] == "chat.completion.chunk" for c in turn.chunks)
    done = turn.one("done")
    assert done == {"assistant_message_id": answer["id"], "status": "complete"}
    usage = turn.one("usage")
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0 and usage["ttft_ms"] > 0

    got = user.get(f"/api/sessions/{session['id']}").json()  # done comes after the last write
    assert [m["role"] for m in got["messages"]] == ["user", "assistant"]
    asked, answered = got["messages"]
    assert asked["id"] == question["id"] and asked["content"] == "Say hello." and asked["status"] == "complete"
    assert answered["id"] == answer["id"] and answered["content"] == turn.text and answered["status"] == "complete"
    meta = answered["metadata"]
    assert meta["model"] == GEMMA and meta["arguments"] == {"max_tokens": 8, "temperature": 0}
    assert meta["usage"] == {k: usage[k] for k in ("prompt_tokens", "completion_tokens")}
    assert meta["latency_ms"] >= meta["ttft_ms"] > 0
    assert got["usage"]["total_tokens"] == usage["total_tokens"] and got["active_leaf_id"] == answer["id"]
    assert usage_requests(user, GEMMA, 1) >= 1  # metered through the gateway, to the caller


def test_prompt_holds_persona_history_and_arguments(user: httpx.Client, models: dict[str, str], capture: Proc
                                                    ) -> None:  # fmt: skip
    sid = new_session(user, title="prompt", model=models["capture"], system_prompt="You are Persona X.",
                      history_buffer=2, arguments={"temperature": 0.1})["id"]  # fmt: skip

    def sent(body: dict[str, Any]) -> dict[str, Any]:
        httpx.delete(capture.url + "/_captured")
        turn = send(user, sid, body)
        assert turn.status == 200 and turn.one("done")["status"] == "complete", turn.body
        captured = httpx.get(capture.url + "/_captured").json()
        assert len(captured) == 1
        return dict(json.loads(captured[0]["body"]))

    first = sent({"content": "one"})
    assert first["messages"] == [
        {"role": "system", "content": "You are Persona X."},
        {"role": "user", "content": "one"},
    ]
    assert first["temperature"] == 0.1 and first["stream"] is True
    assert first["stream_options"] == {"include_usage": True}
    sent({"content": "two"})
    third = sent({"content": "three", "arguments": {"max_tokens": 5, "top_p": 0.5, "stop": ["END"], "seed": 7}})
    assert [m["content"] for m in third["messages"]] == ["You are Persona X.", "two", "captured", "three"]
    assert {k: third[k] for k in ("max_tokens", "top_p", "stop", "seed", "temperature")} == {
        "max_tokens": 5, "top_p": 0.5, "stop": ["END"], "seed": 7, "temperature": 0.1}  # fmt: skip
    assert set(third) <= {"model", "messages", "stream", "stream_options", "max_tokens", "top_p", "stop", "seed",
                          "temperature"}  # fmt: skip
    fourth = sent({"content": "four", "system_prompt": "Another persona.", "history_buffer": 0})
    assert fourth["messages"] == [{"role": "system", "content": "Another persona."},
                                  {"role": "user", "content": "four"}]  # fmt: skip


def test_regenerate_and_edit_keep_the_earlier_branch(user: httpx.Client, models: dict[str, str]) -> None:
    sid = new_session(user, title="branches", model=models["ok"])["id"]
    first = send(user, sid, {"content": "question one"})
    q1, a1 = first.one("user_message")["id"], first.one("assistant_message")["id"]
    regenerated = send(user, sid, {"parent_id": q1})
    assert regenerated.one("user_message")["id"] == q1  # no new question
    a2 = regenerated.one("assistant_message")["id"]
    session = user.get(f"/api/sessions/{sid}").json()
    assert [m["id"] for m in session["messages"]] == [q1, a2]
    assert session["messages"][1]["siblings"] == [a1, a2] and session["messages"][1]["sibling_index"] == 1

    edited = send(user, sid, {"content": "question one, edited", "parent_id": None})
    q2, a3 = edited.one("user_message")["id"], edited.one("assistant_message")["id"]
    assert edited.one("user_message")["parent_id"] is None
    session = user.get(f"/api/sessions/{sid}").json()
    assert [m["id"] for m in session["messages"]] == [q2, a3]
    assert session["messages"][0]["siblings"] == [q1, q2]

    back = user.patch(f"/api/sessions/{sid}", json={"active_leaf_id": a1}).json()
    assert [m["id"] for m in back["messages"]] == [q1, a1]  # nothing the user saw is lost
    follow = send(user, sid, {"content": "and then?"})
    assert follow.one("user_message")["parent_id"] == a1
    everything = user.get(f"/api/sessions/{sid}/export").json()["messages"]
    assert len(everything) == 7  # q1 a1 a2 q2 a3 q3 a4
    assert {m["status"] for m in everything} == {"complete"}
    assert user.post(f"/api/sessions/{sid}/messages", json={"parent_id": a1}).status_code == 400  # not a question
    assert user.post(f"/api/sessions/{sid}/messages", json={"content": "x", "parent_id": "msg_missing"}
                     ).status_code == 404  # fmt: skip
    assert user.post(f"/api/sessions/{sid}/messages", json={}).status_code == 422


def test_usage_per_session_sums_the_answers(user: httpx.Client, models: dict[str, str]) -> None:
    sid = new_session(user, title="usage", model=models["ok"])["id"]
    turns = [send(user, sid, {"content": f"question {n}"}) for n in range(3)]
    spent = [t.one("usage") for t in turns]
    assert all(u["completion_tokens"] == 2 for u in spent)  # the scripted upstream's count
    session = user.get(f"/api/sessions/{sid}").json()
    assert session["usage"] == {
        "prompt_tokens": sum(u["prompt_tokens"] for u in spent),
        "completion_tokens": 6,
        "total_tokens": sum(u["total_tokens"] for u in spent),
    }
    listed = next(s for s in user.get("/api/sessions").json()["data"] if s["id"] == sid)
    assert listed["usage"] == session["usage"]
    # Questions and answers are searchable once written.
    for words in ("question 2", "hello world"):
        assert [s["id"] for s in user.get("/api/sessions", params={"q": words}).json()["data"]] == [sid]
    assert usage_requests(user, models["ok"], 3) == 3


def test_a_client_that_leaves_keeps_the_partial_answer(
    user: httpx.Client, models: dict[str, str], faulty_upstream: Proc
) -> None:
    sid = new_session(user, title="cut off", model=models["long"])["id"]
    aborted_before = len(httpx.get(faulty_upstream.url + "/_aborted").json())
    received = ""
    with streaming(user, sid, {"content": "count"}) as events:
        for event in events:
            if event.name == "assistant_message":
                answer_id = event.data["id"]
            if event.name is None and event.data.get("choices"):
                received += event.data["choices"][0]["delta"].get("content") or ""
            if received.count("tok") >= 20:
                break  # leaving the block closes the connection mid-answer
    answer = final_answer(user, sid, answer_id)
    assert answer["status"] == "incomplete" and answer["error"] is None
    assert answer["content"].startswith(received)  # what arrived is kept, in order
    count = answer["content"].count("tok")
    assert 20 <= count < 2000
    assert answer["content"] == "".join(f" tok{i}" for i in range(count))
    assert answer["metadata"]["usage"]["completion_tokens"] > 0
    aborted = wait_for(lambda: httpx.get(faulty_upstream.url + "/_aborted").json()[aborted_before:], "the upstream")
    assert aborted[0]["tokens_sent"] < 2000  # the upstream call was closed too
    session = user.get(f"/api/sessions/{sid}").json()
    assert session["active_leaf_id"] == answer_id and session["messages"][0]["content"] == "count"
    assert usage_requests(user, models["long"], 1) == 1  # the part that was streamed is metered


def test_errors_before_the_stream_are_json_and_leave_nothing(user: httpx.Client, models: dict[str, str]) -> None:
    sid = new_session(user, title="refused", model=models["ok"])["id"]
    send(user, sid, {"content": "kept"})
    before = user.get(f"/api/sessions/{sid}").json()
    cases = [
        ({"content": "x", "model": models["error-500"]}, 502),
        ({"content": "x", "model": models["hidden"]}, 404),  # a model this user may not see
        ({"content": "x", "model": "no-such-model"}, 404),
        ({"content": "x", "arguments": {"temperature": 5}}, 422),
        ({"content": "x", "arguments": {"logit_bias": {"1": 2}}}, 422),  # not on the allowlist
        ({"content": "x", "api_base": "http://evil.example"}, 422),
        ({"content": "x", "rag": {"repositories": ["no-such-repo"]}}, 404),
    ]
    for body, status in cases:
        resp = user.post(f"/api/sessions/{sid}/messages", json=body)
        assert resp.status_code == status, (body, resp.status_code, resp.text)
        assert resp.headers["content-type"] == "application/json" and resp.json()["detail"]
    after = user.get(f"/api/sessions/{sid}").json()
    assert after["messages"] == before["messages"] and after["active_leaf_id"] == before["active_leaf_id"]
    assert len(user.get(f"/api/sessions/{sid}/export").json()["messages"]) == 2


def test_an_upstream_error_mid_stream_marks_the_answer(
    admin: httpx.Client, lisa_peer: LisaServer, models: dict[str, str]
) -> None:
    """The peer's upstream read timeout is 2 s: a stream that stalls after two chunks ends with an error."""
    with new_user(admin, lisa_peer, "stalled") as user:
        sid = new_session(user, title="stalls", model=models["stall-mid-stream"])["id"]
        started = time.monotonic()
        turn = send(user, sid, {"content": "go"})
        assert turn.status == 200 and time.monotonic() - started < 30
        assert turn.text == "hello wor"
        assert "stalled" in turn.one("error")["detail"]
        assert turn.one("done")["status"] == "error"
        answer = user.get(f"/api/sessions/{sid}").json()["messages"][1]
        assert answer["status"] == "error" and "stalled" in answer["error"] and answer["content"] == "hello wor"

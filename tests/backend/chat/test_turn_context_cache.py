"""A turn builds its prompt from the context its process remembered after the session's last turn
(backend/chat/recent_contexts.py), confirmed by the session's revision (migration 0018's triggers). These tests
change a session behind a backend's back — through a second backend on the same database, through another route,
and with plain SQL — and check that the next turn's prompt, read at a recording upstream, is the session as it is.
Each would fail if a remembered context were used without its revision check."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from backend.chat.recent_contexts import RecentContexts
from backend.chat.turn_sql import TurnContext
from backend.db.engine import asyncpg_dsn
from tests.backend.chat.helpers import new_session, new_user, send
from tests.support import LisaServer, Proc, start_module


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_module("tests.servers.capture_server", tmp_path_factory.mktemp("turn-cache-capture"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def model(admin: httpx.Client, capture: Proc) -> Iterator[str]:
    model_id = f"turn-cache-{secrets.token_hex(3)}"
    resp = admin.post("/api/models", json={"id": model_id, "type": "textgen", "hosting": "internal",
                                           "base_url": capture.url + "/v1"})  # fmt: skip
    assert resp.status_code == 201, resp.text
    yield model_id
    admin.delete(f"/api/models/{model_id}")


@pytest.fixture
def user(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "cache") as client:
        yield client


def prompt_of(client: httpx.Client, capture: Proc, session_id: str, body: dict[str, Any]) -> list[str]:
    """The turn's messages as the upstream received them (their contents, in order)."""
    httpx.delete(capture.url + "/_captured")
    turn = send(client, session_id, body)
    assert turn.status == 200 and turn.one("done")["status"] == "complete", turn.body
    captured = httpx.get(capture.url + "/_captured").json()
    assert len(captured) == 1, captured
    return [str(m["content"]) for m in json.loads(captured[0]["body"])["messages"]]


def sql(lisa: LisaServer, statement: str, *args: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(asyncpg_dsn(lisa.database_url))
        try:
            return await conn.fetch(statement, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_a_turn_answered_by_another_backend_is_in_the_next_prompt(
    user: httpx.Client, lisa_peer: LisaServer, capture: Proc, model: str
) -> None:
    sid = new_session(user, title="two replicas", model=model)["id"]
    assert prompt_of(user, capture, sid, {"content": "one"}) == ["one"]
    assert prompt_of(user, capture, sid, {"content": "two"}) == ["one", "captured", "two"]  # remembered here
    with httpx.Client(base_url=lisa_peer.url, headers=dict(user.headers), timeout=60) as peer:
        assert prompt_of(peer, capture, sid, {"content": "three"}) == ["one", "captured", "two", "captured", "three"]
    # back on the first backend: what the peer added is in the prompt (its remembered context is stale)
    assert prompt_of(user, capture, sid, {"content": "four"})[-3:] == ["three", "captured", "four"]


def test_a_session_changed_through_another_route_is_built_from_what_it_is_now(
    user: httpx.Client, capture: Proc, model: str
) -> None:
    sid = new_session(user, title="persona", model=model, system_prompt="Persona A.")["id"]
    assert prompt_of(user, capture, sid, {"content": "one"}) == ["Persona A.", "one"]
    assert user.patch(f"/api/sessions/{sid}", json={"system_prompt": "Persona B."}).status_code == 200
    assert prompt_of(user, capture, sid, {"content": "two"}) == ["Persona B.", "one", "captured", "two"]


def test_messages_changed_in_the_database_by_hand_are_seen(
    user: httpx.Client, lisa: LisaServer, capture: Proc, model: str
) -> None:
    sid = new_session(user, title="by hand", model=model)["id"]
    prompt_of(user, capture, sid, {"content": "one"})
    prompt_of(user, capture, sid, {"content": "two"})
    sql(lisa, "UPDATE chat_messages SET content = 'one, corrected' WHERE session_id = $1 AND content = 'one'", sid)
    assert prompt_of(user, capture, sid, {"content": "three"})[:2] == ["one, corrected", "captured"]
    # the branch moved back by hand to the question "two": its answer and what followed are off the path
    rows = sql(lisa, "SELECT id FROM chat_messages WHERE session_id = $1 AND content = 'two'", sid)
    sql(lisa, "UPDATE chat_sessions SET active_leaf_id = $2 WHERE id = $1", sid, rows[0]["id"])
    assert prompt_of(user, capture, sid, {"content": "four"})[-2:] == ["two", "four"]


def test_a_prompt_built_from_a_stale_context_is_neither_sent_nor_counted(
    admin: httpx.Client, lisa: LisaServer, capture: Proc, model: str
) -> None:
    """A turn whose remembered context turned out stale builds its prompt again before it calls the gateway: the
    upstream sees only the prompt built from the session as it is, and the caller's limit counts one call a turn."""
    name = f"cache-rpm-{secrets.token_hex(3)}"
    made = admin.post("/api/tokens", json={"name": name, "username": name, "groups": []})
    assert made.status_code == 201, made.text
    assert admin.put(f"/api/limits/user/{name}", json={"rpm": 3}).status_code == 200
    try:
        with lisa.client(made.json()["token"]) as user:
            sid = new_session(user, title="limited", model=model, system_prompt="Persona A.")["id"]
            assert prompt_of(user, capture, sid, {"content": "one"}) == ["Persona A.", "one"]
            for n, persona in ((2, "Persona B."), (3, "Persona C.")):  # each turn's remembered context is stale
                assert user.patch(f"/api/sessions/{sid}", json={"system_prompt": persona}).status_code == 200
                assert prompt_of(user, capture, sid, {"content": f"turn {n}"})[0] == persona  # one call upstream
                assert user.get("/api/limits/me").json()["buckets"][0]["requests_last_minute"] == n
            httpx.delete(capture.url + "/_captured")
            over = send(user, sid, {"content": "turn 4"})  # the limit is real: a fourth call is refused
            assert over.status == 429, over.body
            assert httpx.get(capture.url + "/_captured").json() == []
    finally:
        admin.delete(f"/api/limits/user/{name}")


def test_a_session_deleted_between_turns_is_not_found(user: httpx.Client, capture: Proc, model: str) -> None:
    sid = new_session(user, title="gone", model=model)["id"]
    prompt_of(user, capture, sid, {"content": "one"})
    assert user.delete(f"/api/sessions/{sid}").status_code == 204
    httpx.delete(capture.url + "/_captured")
    turn = send(user, sid, {"content": "two"})
    assert turn.status == 404 and "not found" in turn.body["detail"]
    assert httpx.get(capture.url + "/_captured").json() == []  # nothing went upstream


def test_another_users_turn_never_uses_the_owners_remembered_context(
    user: httpx.Client, admin: httpx.Client, lisa: LisaServer, capture: Proc, model: str
) -> None:
    sid = new_session(user, title="mine", model=model)["id"]
    prompt_of(user, capture, sid, {"content": "secret plan"})
    with new_user(admin, lisa, "cache-other") as other:
        httpx.delete(capture.url + "/_captured")
        turn = send(other, sid, {"content": "what did they say?"})
        assert turn.status == 404
    assert httpx.get(capture.url + "/_captured").json() == []


def test_the_revision_rises_with_every_change_and_once_per_statement(
    user: httpx.Client, lisa: LisaServer, capture: Proc, model: str
) -> None:
    sid = new_session(user, title="revisions", model=model)["id"]

    def revision() -> int:
        return int(sql(lisa, "SELECT revision FROM chat_sessions WHERE id = $1", sid)[0]["revision"])

    start = revision()
    prompt_of(user, capture, sid, {"content": "one"})
    after_turn = revision()
    assert after_turn > start
    user.patch(f"/api/sessions/{sid}", json={"title": "renamed"})
    assert revision() > after_turn
    before = revision()
    sql(lisa, "UPDATE chat_messages SET status = status WHERE session_id = $1", sid)  # two rows, one statement
    assert revision() == before + 1
    before = revision()
    sql(lisa, "UPDATE chat_sessions SET revision = revision + 5 WHERE id = $1", sid)  # set by hand: kept as set
    assert revision() == before + 5


def test_remembered_contexts_are_bounded() -> None:
    def context(chars: int, revision: int = 1) -> TurnContext:
        path = [{"id": "m", "parent_id": None, "role": "user", "content": "x" * chars, "status": "complete",
                 "metadata": None}]  # fmt: skip
        return TurnContext({"model": None, "settings": {}, "active_leaf_id": "m", "context_documents": 0}, path,
                           revision)  # fmt: skip

    recent = RecentContexts(max_entries=2, max_total_chars=1000)
    recent.put("a", "s1", context(10))
    recent.put("a", "s2", context(10))
    assert recent.get("a", "s1") is not None  # s1 used last: s2 goes first
    recent.put("a", "s3", context(10))
    assert recent.get("a", "s2") is None and recent.get("a", "s1") is not None and len(recent) == 2
    recent.put("b", "s4", context(995))  # over the characters: the oldest go
    assert recent.get("b", "s4") is not None and recent.get("a", "s1") is None
    assert recent.get("b", "s1") is None  # keyed by owner too
    roomy = RecentContexts()
    roomy.put("a", "big", context(300 * 1024))  # a branch too long to remember
    roomy.put("a", "fits", context(200 * 1024))
    assert roomy.get("a", "big") is None and roomy.get("a", "fits") is not None
    with pytest.raises(ValueError):
        recent.put("a", "s1", TurnContext({}, [], 1, unchanged=True))

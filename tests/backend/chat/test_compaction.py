"""Compaction with the local gemma model registered with a small context window: the older turns become a summary
kept in the branch (nothing deleted) and used in place of them; what cannot be summarised is reported."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from backend.db.engine import asyncpg_dsn
from tests.backend.chat.context_helpers import import_session, local_gemma, registered_model
from tests.backend.chat.helpers import new_session, new_user
from tests.support import LisaServer

WINDOW = 320  # small, so that the summarising requests are short (64 tokens each) on a busy machine


def turns(n: int) -> list[tuple[str, str]]:
    """n messages of about 30 tokens each (as counted), alternating user and assistant."""
    out = []
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        out.append((role, f"Message {i}: the expedition reached camp {i} after crossing the river near the mill."))
    return out


@pytest.fixture(scope="module")
def alice(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "cmp-alice") as client:
        yield client


@pytest.fixture(scope="module")
def tiny(admin: httpx.Client) -> Iterator[str]:
    with local_gemma(admin, "cmp-gemma", context_window=WINDOW, features=[]) as model_id:
        yield model_id


def compact(client: httpx.Client, session: str, **body: object) -> httpx.Response:
    return client.post(f"/api/sessions/{session}/compact", json=body)


def test_older_turns_become_a_summary_in_the_branch(alice: httpx.Client, tiny: str) -> None:
    session = import_session(alice, turns(10), model=tiny)
    ids = [m["id"] for m in session["messages"]]
    done = compact(alice, session["id"])
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["compacted"] and result["notice"] is None, result
    assert result["covers"] == ids[:8]  # all but the latest exchange
    assert result["summary"] and result["prompt_tokens"] < 0.75 * WINDOW
    shown = alice.get(f"/api/sessions/{session['id']}").json()["messages"]
    # kept and shown: the summary sits in the branch just above the first message it did not cover
    assert [m["id"] for m in shown] == [*ids[:8], result["message_id"], *ids[8:]]
    summary = shown[8]
    assert summary["role"] == "system" and summary["content"] == result["summary"]
    assert summary["metadata"]["kind"] == "summary" and summary["metadata"]["covers"] == ids[:8]
    assert summary["metadata"]["model"] == tiny and summary["metadata"]["tokens_before"] > 0.75 * WINDOW
    # later prompts carry the summary in place of what it covers: within the window now, nothing more to do
    again = compact(alice, session["id"]).json()
    assert not again["compacted"] and again["summary"] == result["summary"] and again["message_id"] is None
    # nothing was deleted
    exported = alice.get(f"/api/sessions/{session['id']}/export", params={"format": "json"}).json()
    assert {m["id"] for m in exported["messages"]} >= set(ids)


def test_an_earlier_summary_is_folded_into_the_next(alice: httpx.Client, tiny: str) -> None:
    seeded = [*turns(2), ("summary", "Earlier: the user is planning an expedition."), *turns(8)]
    session = import_session(alice, seeded, model=tiny)
    ids = [m["id"] for m in session["messages"]]
    result = compact(alice, session["id"], force=True).json()
    assert result["compacted"], result
    # the earlier summary stood for the first two messages: the new one covers it and what came after it
    assert result["covers"] == ids[2:-2]


def test_a_short_conversation_is_left_alone(alice: httpx.Client, tiny: str) -> None:
    session = import_session(alice, turns(2), model=tiny)
    result = compact(alice, session["id"]).json()
    assert not result["compacted"] and result["message_id"] is None and result["covers"] == []
    assert result["summary"] is None and result["notice"] is None
    assert compact(alice, session["id"], force=True).json()["compacted"] is False  # nothing to compact before it
    assert len(alice.get(f"/api/sessions/{session['id']}").json()["messages"]) == 2


def test_a_summary_that_fails_is_reported_and_nothing_is_written(
    admin: httpx.Client, alice: httpx.Client, lisa: LisaServer
) -> None:
    with registered_model(admin, "cmp-dead", type="textgen", hosting="internal", base_url="http://127.0.0.1:9/v1",
                          context_window=WINDOW) as dead:  # fmt: skip
        session = import_session(alice, turns(10), model=dead)
        result = compact(alice, session["id"]).json()
    assert not result["compacted"] and "could not be summarised" in result["notice"], result

    async def count() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(lisa.database_url))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM chat_messages WHERE session_id = $1", session["id"]))
        finally:
            await conn.close()

    assert asyncio.run(count()) == 10
    # a window too small to summarise with: told, and the turn would go ahead as it is
    with registered_model(admin, "cmp-minute", type="textgen", hosting="internal", base_url="http://127.0.0.1:9/v1",
                          context_window=70) as minute:  # fmt: skip
        small = compact(alice, session["id"], model=minute).json()
    assert not small["compacted"] and "too small to summarise" in small["notice"], small


def test_refusals(admin: httpx.Client, lisa: LisaServer, alice: httpx.Client, tiny: str) -> None:
    session = import_session(alice, turns(8), model=tiny)["id"]
    with new_user(admin, lisa, "cmp-bob") as bob:
        assert compact(bob, session).status_code == 404
        assert compact(bob, session, model=tiny).status_code == 404
    no_model = new_session(alice)["id"]
    refused = compact(alice, no_model)
    assert refused.status_code == 400 and "model" in refused.json()["detail"]
    assert compact(alice, session, model="no-such-model").status_code == 404
    embedding = compact(alice, session, model="minilm-l6-v2")
    assert embedding.status_code == 400 and "textgen" in embedding.json()["detail"]
    assert compact(alice, session, model=tiny, extra=1).status_code == 422
    assert compact(alice, "ses_missing", model=tiny).status_code == 404

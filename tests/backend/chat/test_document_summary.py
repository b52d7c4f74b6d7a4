"""Summarising a document in a session's context with the local gemma model: map-reduce over a document longer than
a small context window, progress streamed as server-sent events, the summary kept; and what is refused first."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.backend.chat.context_helpers import local_gemma, registered_model, upload
from tests.backend.chat.helpers import Event, new_session, new_user, parse_sse
from tests.support import LisaServer, Proc

WINDOW = 512
TOPICS = ["harbour", "orchard", "library", "railway", "glacier", "market", "observatory", "vineyard"]


def long_document() -> str:
    """About eight paragraphs of ~120 tokens each: several map requests with a 512-token window."""
    return "\n\n".join(
        f"Chapter {i + 1}. The {topic} of the old town was rebuilt in {1900 + 7 * i}. "
        + f"People came to the {topic} every morning, and the council paid {1000 * (i + 1)} crowns for its upkeep. " * 5
        for i, topic in enumerate(TOPICS)
    )


@pytest.fixture(scope="module")
def alice(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "sum-alice") as client:
        yield client


@pytest.fixture(scope="module")
def summarizer(admin: httpx.Client) -> Iterator[str]:
    with local_gemma(admin, "sum-gemma", context_window=WINDOW, features=["summarization"]) as model_id:
        yield model_id


def summarise(client: httpx.Client, session: str, doc: str, body: dict[str, Any]) -> tuple[int, list[Event], Any]:
    with client.stream("POST", f"/api/sessions/{session}/documents/{doc}/summary", json=body) as resp:
        if resp.status_code != 200:
            resp.read()
            return resp.status_code, [], resp.json()
        assert resp.headers["content-type"].startswith("text/event-stream")
        return 200, list(parse_sse(resp.iter_lines())), None


def test_a_long_document_is_summarised_map_reduce_with_progress(alice: httpx.Client, summarizer: str) -> None:
    session = new_session(alice)["id"]
    doc = upload(alice, session, ("town.txt", long_document().encode())).json()["data"][0]
    assert doc["tokens"] > 2 * WINDOW  # it cannot fit one request
    status, events, _ = summarise(alice, session, doc["id"], {"model": summarizer, "max_tokens": 40})
    assert status == 200
    names = [e.name for e in events]
    assert names[0] == "plan" and names[-1] == "summary", names
    plan = events[0].data
    assert plan["pieces"] >= 3 and plan["context_window"] == WINDOW and plan["max_tokens"] == 40
    maps = [e.data for e in events if e.name == "progress" and e.data["stage"] == "map"]
    assert [(p["step"], p["of"]) for p in maps] == [(i, plan["pieces"]) for i in range(1, plan["pieces"] + 1)]
    assert any(e.name == "progress" and e.data["stage"] == "reduce" for e in events)
    final = events[-1].data
    assert final["summary"].strip() and final["requests"] >= plan["pieces"] + 1
    kept = alice.get(f"/api/sessions/{session}/documents/{doc['id']}").json()
    assert kept["summary"] == final["summary"] and kept["summary_model"] == summarizer
    assert kept["summarized_at"] and final["document"]["summary"] == final["summary"]


def test_what_cannot_be_summarised_is_refused_before_the_stream(
    admin: httpx.Client, alice: httpx.Client, lisa: LisaServer, summarizer: str, image_server: Proc
) -> None:
    session = new_session(alice)["id"]
    doc = upload(alice, session, ("short.txt", b"A short note about the harbour.")).json()["data"][0]["id"]
    with local_gemma(admin, "sum-plain", context_window=WINDOW, features=[]) as plain:
        status, _, body = summarise(alice, session, doc, {"model": plain})
    assert status == 400 and "'summarization' feature" in body["detail"] and plain in body["detail"]
    with registered_model(admin, "sum-painter", type="imagegen", hosting="internal",
                          base_url=image_server.url + "/v1", features=["summarization"]) as painter:  # fmt: skip
        status, _, body = summarise(alice, session, doc, {"model": painter})
    assert status == 400 and "textgen" in body["detail"]
    with local_gemma(admin, "sum-hidden", context_window=WINDOW, features=["summarization"]) as hidden:
        assert admin.patch(f"/api/models/{hidden}", json={"allowed_groups": ["nobody-here"]}).status_code == 200
        assert summarise(alice, session, doc, {"model": hidden})[0] == 404  # a model one may not use: not found
    assert summarise(alice, session, doc, {"model": "no-such-model"})[0] == 404
    assert summarise(alice, session, "cdoc_missing", {"model": summarizer})[0] == 404
    assert summarise(alice, session, doc, {"model": summarizer, "temperature": 1})[0] == 422
    assert summarise(alice, session, doc, {"model": summarizer, "max_tokens": 1})[0] == 422
    # A document that would need more requests than allowed (64) with this window: refused, naming the sizes
    huge = upload(alice, session, ("huge.txt", (long_document() * 40).encode())).json()["data"][0]["id"]
    status, _, body = summarise(alice, session, huge, {"model": summarizer})
    assert status == 400 and "over the limit of 64" in body["detail"] and "larger context window" in body["detail"]
    # another user: not found
    with new_user(admin, lisa, "sum-bob") as bob:
        assert summarise(bob, session, doc, {"model": summarizer})[0] == 404
    assert alice.get(f"/api/sessions/{session}/documents/{doc}").json()["summary"] is None


def test_a_failing_model_ends_the_stream_with_an_error_event(admin: httpx.Client, alice: httpx.Client) -> None:
    session = new_session(alice)["id"]
    doc = upload(alice, session, ("note.txt", b"Nothing will summarise this.")).json()["data"][0]["id"]
    with registered_model(admin, "sum-dead", type="textgen", hosting="internal", base_url="http://127.0.0.1:9/v1",
                          features=["summarization"], context_window=WINDOW) as dead:  # fmt: skip
        status, events, _ = summarise(alice, session, doc, {"model": dead})
    assert status == 200 and events[-1].name == "error", events
    assert events[-1].data["status"] == 502 and events[-1].data["detail"]
    assert alice.get(f"/api/sessions/{session}/documents/{doc}").json()["summary"] is None

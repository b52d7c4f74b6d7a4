"""The chat turn joined up with the rest of issue 11, through the running server: documents in context (and what
was cut to fit), personas and directives from prompt templates, sessions started from an assistant, and the
feature toggles of the chat routes. The upstream is tests/servers/capture_server: the test reads the prompt sent."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.backend.chat.context_helpers import import_session, registered_model, upload
from tests.backend.chat.helpers import new_session, new_user, send
from tests.support import LisaServer, Proc, start_module

CLEAN: dict[str, Any] = {"features": {}, "banner": {}, "default_model_id": None}


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_module("tests.servers.capture_server", tmp_path_factory.mktemp("wiring-capture"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def model(admin: httpx.Client, capture: Proc) -> Iterator[str]:
    with registered_model(admin, "wire", type="textgen", hosting="internal", base_url=capture.url + "/v1") as found:
        yield found


@pytest.fixture(scope="module")
def small(admin: httpx.Client, capture: Proc) -> Iterator[str]:
    """A model with a small context window: documents must be cut to fit."""
    with registered_model(admin, "wire-small", type="textgen", hosting="internal", base_url=capture.url + "/v1",
                          context_window=400) as found:  # fmt: skip
        yield found


@pytest.fixture
def user(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "wired") as client:
        yield client


@pytest.fixture
def toggles(admin: httpx.Client) -> Iterator[None]:
    """The test may switch toggles; they go back to their defaults after it."""
    assert admin.put("/api/configuration", json=CLEAN).status_code == 200
    yield
    assert admin.put("/api/configuration", json=CLEAN).status_code == 200


def set_feature(admin: httpx.Client, feature: str, value: bool) -> None:
    resp = admin.patch("/api/configuration", json={"features": {feature: value}})
    assert resp.status_code == 200, resp.text


def prompt_of(
    capture: Proc, client: httpx.Client, sid: str, body: dict[str, Any], *, summaries: bool = False
) -> tuple[Any, dict[str, Any]]:
    """The turn, and the request the upstream received (the last: compaction's summarising requests go first)."""
    httpx.delete(capture.url + "/_captured")
    turn = send(client, sid, body)
    assert turn.status == 200, turn.body
    assert turn.one("done")["status"] == "complete"
    captured = httpx.get(capture.url + "/_captured").json()
    assert len(captured) > 1 if summaries else len(captured) == 1
    return turn, dict(json.loads(captured[-1]["body"]))


def answer_metadata(client: httpx.Client, sid: str) -> dict[str, Any]:
    messages = client.get(f"/api/sessions/{sid}").json()["messages"]
    assert messages[-1]["role"] == "assistant"
    return dict(messages[-1]["metadata"])


def template(client: httpx.Client, kind: str, body: str) -> str:
    resp = client.post("/api/prompt-templates", json={"title": f"t-{secrets.token_hex(3)}", "body": body,
                                                      "kind": kind})  # fmt: skip
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


# --- documents in context -----------------------------------------------------------------------------------------
def test_a_document_joins_the_prompt_and_a_cut_is_told(user: httpx.Client, capture: Proc, model: str, small: str
                                                        ) -> None:  # fmt: skip
    sid = new_session(user, model=model)["id"]
    text = "The launch code is PELICAN. " + "Filler words about nothing much at all. " * 120
    assert upload(user, sid, ("notes.txt", text.encode())).status_code == 201
    _, sent = prompt_of(capture, user, sid, {"content": "What is the code?"})
    question = sent["messages"][-1]
    assert question["role"] == "user" and "PELICAN" in question["content"]
    assert question["content"].endswith("What is the code?")
    meta = answer_metadata(user, sid)
    assert meta["documents_tokens"] > 0 and "context_documents" not in meta  # whole: nothing cut

    turn, sent = prompt_of(capture, user, sid, {"content": "Again?", "model": small})
    notices = turn.one("context")["notices"]
    assert notices[0]["name"] == "notes.txt" and "notes.txt" in notices[0]["message"]
    assert notices[0]["kept_tokens"] < notices[0]["total_tokens"]
    assert answer_metadata(user, sid)["context_documents"] == notices
    assert len(sent["messages"][-1]["content"]) < len(text)


def test_a_long_history_is_compacted_before_the_turn(user: httpx.Client, capture: Proc, small: str) -> None:
    said = [("user" if i % 2 == 0 else "assistant", f"Message {i}: the expedition reached camp {i} by the river.")
            for i in range(16)]  # fmt: skip
    session = import_session(user, said, model=small)
    turn, sent = prompt_of(capture, user, session["id"], {"content": "Where are we?"}, summaries=True)
    made = turn.one("compaction")["message"]
    assert made["role"] == "system" and made["metadata"]["kind"] == "summary"
    assert "captured" in sent["messages"][0]["content"]  # the summary (the upstream's answer) heads the history
    assert not any("Message 0:" in str(m["content"]) for m in sent["messages"])
    meta = answer_metadata(user, session["id"])
    assert meta["compaction"]["summary_id"] == made["id"] and meta["compaction"]["covers"] > 0


# --- personas and directives ----------------------------------------------------------------------------------------
def test_a_persona_template_is_filled_and_directives_follow_the_question(
    user: httpx.Client, capture: Proc, model: str
) -> None:
    persona = template(user, "persona", "You are {{name}}, expert in {{topic}}.")
    directive = template(user, "directive", "Answer in {{language}}.")
    sid = new_session(user, model=model, persona_template_id=persona, directive_template_ids=[directive],
                      variables={"name": "Ada", "topic": "engines", "language": "French"})["id"]  # fmt: skip
    _, sent = prompt_of(capture, user, sid, {"content": "Hello"})
    assert sent["messages"][0] == {"role": "system", "content": "You are Ada, expert in engines."}
    assert sent["messages"][-1] == {"role": "user", "content": "Hello\n\nAnswer in French."}

    # the turn's own variables and template win for the turn
    _, sent = prompt_of(capture, user, sid, {"content": "Hi", "persona_template_id": persona,
                                             "directive_template_ids": [],
                                             "variables": {"name": "Bob", "topic": "tea"}})  # fmt: skip
    assert sent["messages"][0]["content"] == "You are Bob, expert in tea."
    assert sent["messages"][-1]["content"] == "Hi"
    _, sent = prompt_of(capture, user, sid, {"content": "Hi", "system_prompt": "Free {{text}}", "variables": {},
                                             "directive_template_ids": []})  # fmt: skip
    assert sent["messages"][0]["content"] == "Free {{text}}"  # one's own text is sent as written

    before = len(user.get(f"/api/sessions/{sid}").json()["messages"])
    missing = send(user, sid, {"content": "x", "variables": {"name": "Cy"}, "directive_template_ids": []})
    assert missing.status == 400 and "topic" in missing.body["detail"], missing.body
    unknown = send(user, sid, {"content": "x", "variables": {"name": "C", "topic": "t", "colour": "red"},
                               "directive_template_ids": []})  # fmt: skip
    assert unknown.status == 400 and "colour" in unknown.body["detail"], unknown.body
    assert len(user.get(f"/api/sessions/{sid}").json()["messages"]) == before  # nothing half-written
    # the session's own settings are checked when written
    created = user.post("/api/sessions", json={"model": model, "persona_template_id": persona})
    assert created.status_code == 400 and "name" in created.json()["detail"] and "topic" in created.json()["detail"]
    changed = user.patch(f"/api/sessions/{sid}", json={"variables": {"name": "Dee"}})
    assert changed.status_code == 400 and "topic" in changed.json()["detail"]
    assert user.get(f"/api/sessions/{sid}").json()["variables"]["name"] == "Ada"


def test_another_users_template_is_not_found(admin: httpx.Client, lisa: LisaServer, user: httpx.Client,
                                             model: str) -> None:  # fmt: skip
    with new_user(admin, lisa, "wired-other") as other:
        theirs = template(other, "persona", "Secret persona.")
    sid = new_session(user, model=model)["id"]
    turn = send(user, sid, {"content": "x", "persona_template_id": theirs})
    assert turn.status == 404, turn.body


# --- assistants -----------------------------------------------------------------------------------------------------
def test_a_session_from_an_assistant(admin: httpx.Client, lisa: LisaServer, user: httpx.Client, capture: Proc,
                                     model: str) -> None:  # fmt: skip
    directive = template(admin, "directive", "Be brief.")
    admin.patch(f"/api/prompt-templates/{directive}", json={"sharing": "public"})
    resp = admin.post("/api/assistants", json={
        "name": f"helper-{secrets.token_hex(3)}", "model_id": model, "model_args": {"temperature": 0.3},
        "persona": {"text": "You are the helper."}, "directives": [{"template_id": directive}],
    })  # fmt: skip
    assert resp.status_code == 201, resp.text
    assistant = resp.json()["id"]
    hidden = admin.post("/api/assistants", json={"name": f"hidden-{secrets.token_hex(3)}", "model_id": model,
                                                 "allowed_groups": ["wire-nobody"]})  # fmt: skip
    assert hidden.status_code == 201, hidden.text
    try:
        session = new_session(user, assistant_id=assistant)
        assert session["model"] == model and session["assistant_id"] == assistant
        assert session["system_prompt"] == "You are the helper." and session["arguments"]["temperature"] == 0.3
        _, sent = prompt_of(capture, user, session["id"], {"content": "Hi"})
        assert sent["messages"][0] == {"role": "system", "content": "You are the helper."}
        assert sent["messages"][-1]["content"] == "Hi\n\nBe brief." and sent["temperature"] == 0.3

        refused = user.post("/api/sessions", json={"assistant_id": hidden.json()["id"]})
        assert refused.status_code == 404, refused.text
        assert user.post("/api/sessions", json={"assistant_id": "nope"}).status_code == 404
    finally:
        admin.delete(f"/api/assistants/{assistant}")
        admin.delete(f"/api/assistants/{hidden.json()['id']}")


def test_a_session_switches_assistant_or_drops_it(admin: httpx.Client, user: httpx.Client, capture: Proc,
                                                  model: str, small: str) -> None:  # fmt: skip
    def assistant(persona: str, model_id: str, args: dict[str, Any], **extra: Any) -> str:
        resp = admin.post("/api/assistants", json={"name": f"switch-{secrets.token_hex(3)}", "model_id": model_id,
                                                   "model_args": args, "persona": {"text": persona}, **extra})  # fmt: skip
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    first = assistant("You are A.", model, {"temperature": 0.3})
    second = assistant("You are B.", small, {"max_tokens": 20})
    hidden = assistant("You are hidden.", model, {}, allowed_groups=["wire-nobody"])
    try:
        plain = new_session(user, assistant_id=first, history_buffer=2)
        mine = new_session(user, assistant_id=first)
        assert user.patch(f"/api/sessions/{mine['id']}", json={"system_prompt": "My own.", "model": "gemma3-270m"}
                          ).status_code == 200  # fmt: skip

        switched = user.patch(f"/api/sessions/{plain['id']}", json={"assistant_id": second}).json()
        assert switched["assistant_id"] == second and switched["model"] == small
        assert switched["system_prompt"] == "You are B." and switched["arguments"]["max_tokens"] == 20
        assert switched["arguments"]["temperature"] is None and switched["history_buffer"] == 2  # not the assistant's
        _, sent = prompt_of(capture, user, plain["id"], {"content": "Hi"})
        assert sent["messages"][0] == {"role": "system", "content": "You are B."} and sent["max_tokens"] == 20

        kept = user.patch(f"/api/sessions/{mine['id']}", json={"assistant_id": second}).json()
        assert kept["system_prompt"] == "My own." and kept["arguments"]["max_tokens"] == 20
        assert kept["model"] == "gemma3-270m"  # chosen by the user: kept

        for refused in (hidden, "nope"):
            resp = user.patch(f"/api/sessions/{plain['id']}", json={"assistant_id": refused})
            assert resp.status_code == 404, resp.text
        assert user.get(f"/api/sessions/{plain['id']}").json()["assistant_id"] == second  # unchanged

        both = user.patch(f"/api/sessions/{mine['id']}", json={"assistant_id": first, "arguments": {"seed": 7}}).json()
        assert both["assistant_id"] == first and both["arguments"]["seed"] == 7  # the request's own field wins
        assert both["arguments"]["temperature"] is None

        cleared = user.patch(f"/api/sessions/{plain['id']}", json={"assistant_id": None}).json()
        assert cleared["assistant_id"] is None and cleared["system_prompt"] is None and cleared["arguments"] is None
        assert cleared["model"] == small and cleared["history_buffer"] == 2
        _, sent = prompt_of(capture, user, plain["id"], {"content": "Hi"})
        assert sent["messages"][0]["role"] != "system" and sent.get("max_tokens") != 20
    finally:
        for assistant_id in (first, second, hidden):
            admin.delete(f"/api/assistants/{assistant_id}")


# --- feature toggles ------------------------------------------------------------------------------------------------
TURN_FIELDS = [
    ("edit_kwargs", {"arguments": {"temperature": 0.5}}),
    ("edit_chat_history_buffer", {"history_buffer": 2}),
    ("edit_prompt_template", {"system_prompt": "Mine."}),
    ("rag_selection_available", {"rag": {"repositories": ["r"]}}),
    ("edit_num_of_rag_document", {"rag": {"repositories": ["r"], "top_k": 3}}),
]


@pytest.mark.usefixtures("toggles")
@pytest.mark.parametrize(("feature", "field"), TURN_FIELDS, ids=[f for f, _ in TURN_FIELDS])
def test_a_toggle_off_refuses_its_field(admin: httpx.Client, user: httpx.Client, model: str, feature: str,
                                        field: dict[str, Any]) -> None:  # fmt: skip
    sid = new_session(user, model=model)["id"]
    set_feature(admin, feature, False)
    turn = send(user, sid, {"content": "x", **field})
    assert turn.status == 403 and feature in turn.body["detail"], turn.body
    created = user.post("/api/sessions", json={"model": model, **field})
    assert created.status_code == 403 and feature in created.json()["detail"]
    changed = user.patch(f"/api/sessions/{sid}", json=field)
    assert changed.status_code == 403 and feature in changed.json()["detail"]
    assert user.get(f"/api/sessions/{sid}").json()["messages"] == []
    if feature != "edit_num_of_rag_document" and "rag" not in field:  # an admin is exempt
        assert send(admin, new_session(admin, model=model)["id"], {"content": "x", **field}).status == 200


@pytest.mark.usefixtures("toggles")
def test_templates_stay_allowed_without_edit_prompt_template(admin: httpx.Client, user: httpx.Client,
                                                             capture: Proc, model: str) -> None:  # fmt: skip
    persona = template(user, "persona", "Templated persona.")
    set_feature(admin, "edit_prompt_template", False)
    sid = new_session(user, model=model, persona_template_id=persona)["id"]
    _, sent = prompt_of(capture, user, sid, {"content": "x"})
    assert sent["messages"][0]["content"] == "Templated persona."
    set_feature(admin, "edit_kwargs", True)
    assert send(user, sid, {"content": "y", "arguments": {"temperature": 0.2}}).status == 200


@pytest.mark.usefixtures("toggles")
def test_deleting_sessions_can_be_turned_off(admin: httpx.Client, user: httpx.Client, model: str) -> None:
    sid = new_session(user, model=model)["id"]
    set_feature(admin, "delete_session_history", False)
    for resp in (user.delete(f"/api/sessions/{sid}"), user.delete("/api/sessions")):
        assert resp.status_code == 403 and "delete_session_history" in resp.json()["detail"]
    assert user.get(f"/api/sessions/{sid}").status_code == 200
    set_feature(admin, "delete_session_history", True)
    assert user.delete(f"/api/sessions/{sid}").status_code == 204


@pytest.mark.usefixtures("toggles")
def test_metadata_is_left_out_without_view_meta_data(admin: httpx.Client, lisa: LisaServer, user: httpx.Client,
                                                     capture: Proc, model: str) -> None:  # fmt: skip
    sid = new_session(user, model=model)["id"]
    prompt_of(capture, user, sid, {"content": "x"})
    path = user.post(f"/api/sessions/{sid}/share").json()["path"]
    with new_user(admin, lisa, "wired-reader") as reader:

        def shared_metadata(client: httpx.Client) -> dict[str, Any]:
            resp = client.get(path)
            assert resp.status_code == 200, resp.text
            return dict(resp.json()["messages"][-1]["metadata"])

        assert answer_metadata(user, sid)["model"] == model
        assert shared_metadata(reader)["model"] == model and shared_metadata(user)["model"] == model
        set_feature(admin, "view_meta_data", False)
        assert answer_metadata(user, sid) == {}
        assert shared_metadata(reader) == {} and shared_metadata(user) == {}  # the shared view too
        assert shared_metadata(admin)["model"] == model  # admins are exempt, here as everywhere
        exported = user.get(f"/api/sessions/{sid}/export").json()
        assert all(m["metadata"] == {} for m in exported["messages"])
        set_feature(admin, "view_meta_data", True)
        assert answer_metadata(user, sid)["model"] == model
        assert shared_metadata(reader)["model"] == model


@pytest.mark.usefixtures("toggles")
def test_context_uploads_and_summaries_can_be_turned_off(admin: httpx.Client, user: httpx.Client,
                                                         model: str) -> None:  # fmt: skip
    sid = new_session(user, model=model)["id"]
    assert upload(user, sid, ("a.txt", b"some text")).status_code == 201
    doc = user.get(f"/api/sessions/{sid}/documents").json()["data"][0]["id"]
    set_feature(admin, "upload_context_docs", False)
    refused = upload(user, sid, ("b.txt", b"more text"))
    assert refused.status_code == 403 and "upload_context_docs" in refused.json()["detail"]
    set_feature(admin, "document_summarization", False)
    summary = user.post(f"/api/sessions/{sid}/documents/{doc}/summary", json={"model": model})
    assert summary.status_code == 403 and "document_summarization" in summary.json()["detail"]
    set_feature(admin, "upload_context_docs", True)
    assert upload(user, sid, ("b.txt", b"more text")).status_code == 201

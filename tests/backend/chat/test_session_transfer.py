"""Export and import of a chat session through the running server (backend/chat/transfer.py): every setting, the
documents in context, compaction summaries and every branch round-trip; an import naming what the importer may not
use, or that the toggles or caps refuse, answers 4xx and writes nothing."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.backend.chat.context_helpers import upload
from tests.backend.chat.helpers import new_session, new_user
from tests.support import LisaServer

CLEAN: dict[str, Any] = {"features": {}, "banner": {}, "default_model_id": None}
SHA = "ab" * 32


@pytest.fixture(scope="module")
def things(admin: httpx.Client, lisa: LisaServer) -> Iterator[dict[str, Any]]:
    """What sessions name: a model, a repository, an MCP server, a directive template and an assistant (all usable
    by every user), and a model, repository, MCP server and assistant only the group 'xfer-few' may use."""
    tag = secrets.token_hex(3)
    made: dict[str, Any] = {"model": f"xfer-{tag}", "hidden_model": f"xfer-hidden-{tag}", "repo": f"xfer-{tag}",
                            "hidden_repo": f"xfer-hidden-{tag}"}  # fmt: skip
    for key, groups in (("model", []), ("hidden_model", ["xfer-few"])):
        body = {"id": made[key], "type": "textgen", "hosting": "internal", "base_url": "http://127.0.0.1:9/v1",
                "allowed_groups": groups}  # fmt: skip
        assert admin.post("/api/models", json=body).status_code == 201
    for key, groups in (("repo", []), ("hidden_repo", ["xfer-few"])):
        assert admin.post("/api/repositories", json={"id": made[key], "allowed_groups": groups}).status_code == 201
    for key, groups in (("server", []), ("hidden_server", ["xfer-few"])):
        body = {"name": f"xfer-{key}-{tag}", "scope": "global", "transport": "streamable_http",
                "url": "http://127.0.0.1:9/mcp", "allowed_groups": groups}  # fmt: skip
        resp = admin.post("/api/mcp/servers", json=body)
        assert resp.status_code == 201, resp.text
        made[key] = resp.json()["id"]
    directive = admin.post("/api/prompt-templates", json={"title": f"xfer-d-{tag}", "body": "Answer in {{lang}}.",
                                                          "kind": "directive"}).json()["id"]  # fmt: skip
    assert admin.patch(f"/api/prompt-templates/{directive}", json={"sharing": "public"}).status_code == 200
    made["directive"] = directive
    for key, groups in (("assistant", []), ("hidden_assistant", ["xfer-few"])):
        body = {"name": f"xfer-{key}-{tag}", "model_id": made["model"], "model_args": {"temperature": 0.3},
                "persona": {"text": "You help {{who}}."}, "directives": [{"template_id": directive}],
                "mcp_tools": [f"{made['server']}/echo"], "allowed_groups": groups}  # fmt: skip
        resp = admin.post("/api/assistants", json=body)
        assert resp.status_code == 201, resp.text
        made[key] = resp.json()["id"]
    yield made
    for key in ("assistant", "hidden_assistant"):
        admin.delete(f"/api/assistants/{made[key]}")
    for key in ("server", "hidden_server"):
        admin.delete(f"/api/mcp/servers/{made[key]}")
    for key in ("model", "hidden_model"):
        admin.delete(f"/api/models/{made[key]}")
    for key in ("repo", "hidden_repo"):
        admin.delete(f"/api/repositories/{made[key]}")


@pytest.fixture
def user(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "xfer") as client:
        yield client


@pytest.fixture
def toggles(admin: httpx.Client) -> Iterator[None]:
    assert admin.put("/api/configuration", json=CLEAN).status_code == 200
    yield
    assert admin.put("/api/configuration", json=CLEAN).status_code == 200


SETTINGS = ("model", "system_prompt", "arguments", "history_buffer", "rag", "persona_template_id", "variables",
            "directive_template_ids", "assistant_id", "mcp_tools")  # fmt: skip


def settings_of(session: dict[str, Any]) -> dict[str, Any]:
    return {k: session[k] for k in SETTINGS}


def documents_of(client: httpx.Client, session_id: str) -> list[tuple[Any, ...]]:
    rows = client.get(f"/api/sessions/{session_id}/documents").json()["data"]
    return [(d["name"], d["size_bytes"], d["chars"], d["tokens"], d["summary"], d["created_at"]) for d in rows]


def tree_of(export: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The messages of an export with their ids replaced by their position (ids change on import)."""
    position = {m["id"]: n for n, m in enumerate(export["messages"])}

    def meta(m: dict[str, Any]) -> dict[str, Any]:
        found = dict(m["metadata"])
        if "covers" in found:
            found["covers"] = [position[c] for c in found["covers"]]
        return found

    return [(position.get(m["parent_id"]), m["role"], m["content"], meta(m), m["status"]) for m in export["messages"]]


def test_a_session_from_an_assistant_round_trips(user: httpx.Client, things: dict[str, str]) -> None:
    made = new_session(user, title="From an assistant", assistant_id=things["assistant"], variables={"who": "pilots",
                       "lang": "French"}, history_buffer=3, rag={"repositories": [things["repo"]], "top_k": 2})  # fmt: skip
    assert made["mcp_tools"] == [f"{things['server']}/echo"] and made["assistant_id"] == things["assistant"]
    assert upload(user, made["id"], ("notes.md", b"# Notes\nThe code is PELICAN.")).status_code == 201
    exported = user.get(f"/api/sessions/{made['id']}/export").json()
    assert exported["version"] == 2
    session = exported["session"]
    assert session["assistant_persona"] == "You help {{who}}." and session["directives"] == ["Answer in {{lang}}."]
    assert exported["context_documents"][0]["text"] == "# Notes\nThe code is PELICAN."

    imported = user.post("/api/sessions/import", json=exported)
    assert imported.status_code == 201, imported.text
    copy_ = imported.json()
    assert settings_of(copy_) == settings_of(made)
    assert documents_of(user, copy_["id"]) == documents_of(user, made["id"])
    again = user.get(f"/api/sessions/{copy_['id']}/export").json()
    assert {k: v for k, v in again["session"].items() if k not in ("id", "created_at", "updated_at")} == {
        k: v for k, v in session.items() if k not in ("id", "created_at", "updated_at")
    }
    assert again["context_documents"] == exported["context_documents"]


def full_export(things: dict[str, str], persona: str) -> dict[str, Any]:
    """A version 2 export written by hand: a persona template with variables, every other setting, a summary, two
    branches and two documents (one summarised)."""

    def message(n: int, parent: int | None, role: str, content: str, **meta: Any) -> dict[str, Any]:
        return {"id": f"m{n}", "parent_id": f"m{parent}" if parent is not None else None, "role": role,
                "content": content, "metadata": meta, "status": "complete", "error": None,
                "created_at": f"2026-01-01T00:00:{n:02d}Z", "updated_at": f"2026-01-01T00:00:{n:02d}Z"}  # fmt: skip

    messages = [
        message(0, None, "user", "first question"),
        message(1, 0, "assistant", "first answer", model=things["model"]),
        message(2, 1, "system", "They talked about birds.", kind="summary", covers=["m0", "m1"]),
        message(3, 2, "user", "second question"),
        message(4, 3, "assistant", "answer A", model=things["model"]),
        message(5, 3, "assistant", "answer B (regenerated)", model=things["model"]),
    ]
    messages[-1]["status"] = "incomplete"
    documents = [
        {"name": "a.txt", "text": "alpha text", "size_bytes": 10, "sha256": SHA, "summary": "about alpha",
         "summary_model": things["model"], "summarized_at": "2026-01-01T00:01:00Z", "created_at": "2026-01-01T00:00:30Z"},
        {"name": "b.py", "text": "print('b')", "size_bytes": 10, "sha256": SHA, "summary": None, "summary_model": None,
         "summarized_at": None, "created_at": "2026-01-01T00:00:31Z"},
    ]  # fmt: skip
    session = {"title": "Everything", "model": things["model"], "arguments": {"temperature": 0.7, "max_tokens": 50,
               "stop": ["END"], "seed": 4}, "history_buffer": 6, "rag": {"repositories": [things["repo"]]},
               "persona_template_id": persona, "variables": {"name": "Ada", "lang": "Welsh"},
               "directive_template_ids": [things["directive"]], "mcp_tools": [things["server"]],
               "active_leaf_id": "m4", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:09Z"}  # fmt: skip
    return {"format": "lisa.chat.session", "version": 2, "exported_at": "2026-01-02T00:00:00Z", "session": session,
            "messages": messages, "context_documents": documents}  # fmt: skip


def persona_template(client: httpx.Client) -> str:
    resp = client.post("/api/prompt-templates", json={"title": f"xfer-p-{secrets.token_hex(3)}",
                                                      "body": "You are {{name}}.", "kind": "persona"})  # fmt: skip
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_every_setting_summaries_branches_and_documents_round_trip(user: httpx.Client, things: dict[str, str]) -> None:
    doc = full_export(things, persona_template(user))
    first = user.post("/api/sessions/import", json=doc)
    assert first.status_code == 201, first.text
    shown = first.json()
    assert [m["content"] for m in shown["messages"]] == ["first question", "first answer", "They talked about birds.",
                                                         "second question", "answer A"]  # fmt: skip
    assert len(shown["messages"][-1]["siblings"]) == 2
    summary = shown["messages"][2]
    assert summary["metadata"]["covers"] == [m["id"] for m in shown["messages"][:2]]  # the new ids
    assert shown["variables"] == {"name": "Ada", "lang": "Welsh"} and shown["mcp_tools"] == [things["server"]]
    exported = user.get(f"/api/sessions/{shown['id']}/export").json()
    assert tree_of(exported) == tree_of(doc)
    for key, value in doc["session"].items():
        if key in ("arguments", "rag"):  # as sent, with the fields it left out at their defaults
            assert {k: exported["session"][key][k] for k in value} == value, key
        elif key not in ("active_leaf_id", "created_at", "updated_at"):
            assert exported["session"][key] == value, key
    assert [(d["name"], d["text"], d["summary"], d["summary_model"]) for d in exported["context_documents"]] == [
        (d["name"], d["text"], d["summary"], d["summary_model"]) for d in doc["context_documents"]
    ]
    assert [d["tokens"] > 0 for d in user.get(f"/api/sessions/{shown['id']}/documents").json()["data"]] == [True] * 2
    second = user.post("/api/sessions/import", json=exported)
    assert second.status_code == 201, second.text
    assert tree_of(user.get(f"/api/sessions/{second.json()['id']}/export").json()) == tree_of(doc)


def _refused(user: httpx.Client, doc: dict[str, Any], status: int, words: str) -> None:
    before = user.get("/api/sessions").json()["data"]
    resp = user.post("/api/sessions/import", json=doc)
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert words in resp.json()["detail"], resp.text
    assert user.get("/api/sessions").json()["data"] == before  # nothing written


Change = Callable[[dict[str, Any], dict[str, str]], None]
REFUSED: dict[str, tuple[Change, int, str]] = {
    "a model they may not use": (lambda d, t: d["session"].update(model=t["hidden_model"]), 404, "session.model"),
    "an unknown model": (lambda d, t: d["session"].update(model="no-such-model"), 404, "session.model"),
    "a repository they may not see": (
        lambda d, t: d["session"].update(rag={"repositories": [t["hidden_repo"]]}),
        404,
        "session.rag",
    ),
    "an MCP server they may not use": (
        lambda d, t: d["session"].update(mcp_tools=[f"{t['hidden_server']}/echo"]),
        404,
        "session.mcp_tools",
    ),
    "an assistant they may not use": (
        lambda d, t: d["session"].update(assistant_id=t["hidden_assistant"]),
        404,
        "not found",
    ),
    "someone else's template": (
        lambda d, t: d["session"].update(persona_template_id=t["foreign_template"]),
        404,
        "not found",
    ),
    "a variable no template uses": (lambda d, t: d["session"]["variables"].update(extra="x"), 400, "extra"),
    "directives without an assistant": (lambda d, t: d["session"].update(directives=["Obey."]), 400, "assistant"),
    "a document type not accepted": (lambda d, t: d["context_documents"][0].update(name="run.exe"), 400, "run.exe"),
    "two documents of one name": (lambda d, t: d["context_documents"][1].update(name="a.txt"), 422, "twice"),
    "documents in version 1": (lambda d, t: d.update(version=1), 422, "version 2"),
    "a bad document hash": (lambda d, t: d["context_documents"][0].update(sha256="xyz"), 422, "sha256"),
    "a message whose parent is missing": (lambda d, t: d["messages"][5].update(parent_id="m9"), 422, "parent_id"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_an_import_refuses_what_the_importer_may_not_use(
    admin: httpx.Client, lisa: LisaServer, user: httpx.Client, things: dict[str, str], case: str
) -> None:
    with new_user(admin, lisa, "xfer-other") as other:
        foreign = persona_template(other)
    doc = copy.deepcopy(full_export(things, persona_template(user)))
    change, status, words = REFUSED[case]
    change(doc, {**things, "foreign_template": foreign})
    _refused(user, doc, status, words)


@pytest.mark.usefixtures("toggles")
@pytest.mark.parametrize(
    ("feature", "change"),
    [
        ("edit_kwargs", lambda d: None),
        ("edit_chat_history_buffer", lambda d: None),
        ("rag_selection_available", lambda d: None),
        ("edit_prompt_template", lambda d: d["session"].update(persona_template_id=None, variables=None,
                                                               directive_template_ids=None, system_prompt="Mine.")),
        ("upload_context_docs", lambda d: None),
    ],
)  # fmt: skip
def test_an_import_respects_the_toggles(
    admin: httpx.Client, user: httpx.Client, things: dict[str, str], feature: str, change: Callable[[Any], None]
) -> None:
    doc = full_export(things, persona_template(user))
    change(doc)
    assert admin.patch("/api/configuration", json={"features": {feature: False}}).status_code == 200
    _refused(user, doc, 403, feature)

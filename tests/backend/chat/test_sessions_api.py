"""/api/sessions and /api/projects through the running server: CRUD, search, paging, export and import, share
links and their visibility rules, and another user's sessions (404 on every route)."""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.backend.chat.helpers import new_session, new_user
from tests.support import LisaServer


@pytest.fixture(scope="module")
def alice(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "alice") as client:
        yield client


@pytest.fixture(scope="module")
def bob(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "bob") as client:
        yield client


def export_doc(title: str, contents: list[tuple[str, str]], **session: Any) -> dict[str, Any]:
    """A JSON export with one branch of messages (role, content)."""
    messages: list[dict[str, Any]] = []
    parent: str | None = None
    for n, (role, content) in enumerate(contents):
        messages.append({"id": f"m{n}", "parent_id": parent, "role": role, "content": content, "metadata": {},
                         "status": "complete", "error": None, "created_at": f"2026-01-01T00:00:{n:02d}Z"})  # fmt: skip
        parent = f"m{n}"
    return {
        "format": "lisa.chat.session",
        "version": 1,
        "exported_at": "2026-01-02T00:00:00Z",
        "session": {
            "title": title,
            "active_leaf_id": parent,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            **session,
        },
        "messages": messages,
    }


def test_create_get_rename_delete(alice: httpx.Client) -> None:
    created = new_session(alice, title="Trip plans", system_prompt="You are terse.", history_buffer=4,
                          arguments={"temperature": 0.2, "max_tokens": 64, "stop": ["END"]})  # fmt: skip
    assert created["title"] == "Trip plans" and created["messages"] == [] and created["active_leaf_id"] is None
    assert created["arguments"] == {"temperature": 0.2, "max_tokens": 64, "stop": ["END"], "top_p": None, "seed": None}
    assert created["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    sid = created["id"]
    got = alice.get(f"/api/sessions/{sid}").json()
    assert got["system_prompt"] == "You are terse." and got["history_buffer"] == 4
    renamed = alice.patch(f"/api/sessions/{sid}", json={"title": "Trip to Oslo", "system_prompt": None})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["title"] == "Trip to Oslo" and renamed.json()["system_prompt"] is None
    assert renamed.json()["history_buffer"] == 4  # not sent: unchanged
    assert alice.delete(f"/api/sessions/{sid}").status_code == 204
    assert alice.get(f"/api/sessions/{sid}").status_code == 404
    assert alice.delete(f"/api/sessions/{sid}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"title": "x" * 513},
        {"title": "nul\x00"},
        {"unknown": 1},
        {"arguments": {"temperature": 3}},
        {"arguments": {"api_base": "http://evil"}},
        {"arguments": {"stop": ["a", "b", "c", "d", "e"]}},
        {"history_buffer": -1},
        {"rag": {"repositories": []}},
        {"project_id": "../x"},
    ],
)
def test_create_refuses_bad_input(alice: httpx.Client, body: dict[str, Any]) -> None:
    before = alice.get("/api/sessions", params={"limit": 500}).json()["data"]
    resp = alice.post("/api/sessions", json=body)
    assert resp.status_code == 422, resp.text
    assert isinstance(resp.json()["detail"], str)
    assert alice.get("/api/sessions", params={"limit": 500}).json()["data"] == before


def test_paging_and_order(admin: httpx.Client, lisa: LisaServer) -> None:
    with new_user(admin, lisa, "pager") as user:
        ids = [new_session(user, title=f"s{n}")["id"] for n in range(7)]
        seen: list[str] = []
        cursor = None
        while True:
            page = user.get("/api/sessions", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
            assert len(page["data"]) <= 3
            seen += [s["id"] for s in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1]  # most recently active first, each once
        user.patch(f"/api/sessions/{ids[0]}", json={"title": "touched"})
        assert user.get("/api/sessions", params={"limit": 1}).json()["data"][0]["id"] == ids[0]
        assert user.get("/api/sessions", params={"cursor": "not-a-cursor!"}).status_code == 400
        assert user.get("/api/sessions", params={"cursor": "bm9wZQ=="}).status_code == 400  # "nope"


def test_search_by_title_and_content(admin: httpx.Client, lisa: LisaServer) -> None:
    with new_user(admin, lisa, "searcher") as user:
        by_title = new_session(user, title="Zebra crossing rules")["id"]
        doc = export_doc("Plain title", [("user", "what eats a quokka?"), ("assistant", "Quokkas eat leaves.")])
        by_content = user.post("/api/sessions/import", json=doc).json()["id"]
        new_session(user, title="100% sure")
        new_session(user, title="nothing here")

        def search(q: str) -> set[str]:
            resp = user.get("/api/sessions", params={"q": q})
            assert resp.status_code == 200, resp.text
            return {s["title"] for s in resp.json()["data"]}

        assert search("zebra") == {"Zebra crossing rules"}
        assert search("QUOKKA") == {"Plain title"}
        assert search("quok") == {"Plain title"}  # words match as prefixes
        assert search("leaves quokkas") == {"Plain title"}  # every word, in any message
        assert search("leaves zebra") == set()
        assert search("ssing rul") == {"Zebra crossing rules"}  # a part of a title
        user.patch(f"/api/sessions/{by_title}", json={"title": "Giraffe facts"})
        assert search("zebra") == set() and search("giraffe") == {"Giraffe facts"}
        assert search("100%") == {"100% sure"}  # a wildcard taken literally
        assert search("%") == {"100% sure"}
        assert search("_") == set()
        assert search("absent-word") == set()
        assert {by_title, by_content} <= {s["id"] for s in user.get("/api/sessions").json()["data"]}
        assert user.get("/api/sessions", params={"q": ""}).status_code == 422


def test_export_import_round_trip(alice: httpx.Client) -> None:
    doc = export_doc(
        "Round trip",
        [("user", "Hello *there*"), ("assistant", "General Kenobi.\n\n```py\nprint(1)\n```")],
        model="gemma3-270m",
        system_prompt="Be brief.",
        arguments={"temperature": 0.5},
    )
    doc["messages"][1]["metadata"] = {"model": "gemma3-270m", "usage": {"prompt_tokens": 7, "completion_tokens": 5}}
    imported = alice.post("/api/sessions/import", json=doc)
    assert imported.status_code == 201, imported.text
    session = imported.json()
    assert [m["content"] for m in session["messages"]] == ["Hello *there*", "General Kenobi.\n\n```py\nprint(1)\n```"]
    assert session["usage"] == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    assert session["messages"][0]["id"] != "m0"  # new ids
    sid = session["id"]

    exported = alice.get(f"/api/sessions/{sid}/export", params={"format": "json"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/json")
    assert "attachment" in exported.headers["content-disposition"]
    again = alice.post("/api/sessions/import", json=exported.json()).json()
    assert again["id"] != sid
    assert [(m["role"], m["content"], m["metadata"]) for m in again["messages"]] == [
        (m["role"], m["content"], m["metadata"]) for m in session["messages"]
    ]
    assert again["system_prompt"] == "Be brief." and again["model"] == "gemma3-270m"

    markdown = alice.get(f"/api/sessions/{sid}/export", params={"format": "markdown"})
    assert markdown.status_code == 200 and markdown.headers["content-type"].startswith("text/markdown")
    text = markdown.text
    assert text.startswith("# Round trip\n")
    assert "## System\n\nBe brief." in text
    assert "## User\n\nHello *there*" in text
    assert "## Assistant (gemma3-270m)\n\nGeneral Kenobi.\n\n```py\nprint(1)\n```" in text
    assert text.index("## User") < text.index("## Assistant")
    assert alice.get(f"/api/sessions/{sid}/export", params={"format": "pdf"}).status_code == 422


def _broken(change: Any) -> dict[str, Any]:
    doc = export_doc("Broken", [("user", "q"), ("assistant", "a")])
    change(doc)
    return doc


BAD_IMPORTS = {
    "wrong format": lambda d: d.update(format="other"),
    "wrong version": lambda d: d.update(version=3),
    "extra field": lambda d: d.update(extra=1),
    "duplicate id": lambda d: d["messages"][1].update(id="m0"),
    "parent missing": lambda d: d["messages"][1].update(parent_id="nope"),
    "child before parent": lambda d: d["messages"].reverse(),
    "bad role": lambda d: d["messages"][0].update(role="wizard"),
    "bad status": lambda d: d["messages"][0].update(status="half"),
    "nul in content": lambda d: d["messages"][0].update(content="a\x00b"),
    "nul in metadata": lambda d: d["messages"][0].update(metadata={"k": "a\x00"}),
    "deep metadata": lambda d: d["messages"][0].update(metadata={"a": [[[[[[[[[[1]]]]]]]]]]}),
    "leaf elsewhere": lambda d: d["session"].update(active_leaf_id="zzz"),
    "no title": lambda d: d["session"].pop("title"),
    "bad arguments": lambda d: d["session"].update(arguments={"temperature": 9}),
    "messages not a list": lambda d: d.update(messages={}),
    "time without offset": lambda d: d["messages"][0].update(created_at="2026-01-01T00:00:00"),
    "time out of range": lambda d: d["session"].update(created_at="0001-01-01T00:00:00+01:00"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMPORTS))
def test_import_refuses_bad_input_and_writes_nothing(admin: httpx.Client, lisa: LisaServer, case: str) -> None:
    with new_user(admin, lisa, "importer") as user:
        resp = user.post("/api/sessions/import", json=_broken(BAD_IMPORTS[case]))
        assert resp.status_code == 422, resp.text
        assert isinstance(resp.json()["detail"], str) and resp.json()["detail"]
        assert user.get("/api/sessions").json()["data"] == []


def test_import_refuses_numbers_jsonb_cannot_store(admin: httpx.Client, lisa: LisaServer) -> None:
    with new_user(admin, lisa, "importer") as user:
        doc = json.dumps(export_doc("NaN", [("user", "q")])).replace('"metadata": {}', '"metadata": {"x": NaN}')
        resp = user.post("/api/sessions/import", content=doc, headers={"content-type": "application/json"})
        assert resp.status_code == 422, resp.text
        assert isinstance(resp.json()["detail"], str) and resp.json()["detail"]
        assert user.get("/api/sessions").json()["data"] == []


def test_import_is_bounded(alice: httpx.Client) -> None:
    huge = export_doc("Huge", [("user", "x" * 600_000), ("assistant", "y" * 600_000)])
    resp = alice.post("/api/sessions/import", json=huge)
    assert resp.status_code == 413, resp.text
    assert alice.post("/api/sessions/import", content=b"{not json", headers={"content-type": "application/json"}
                      ).status_code == 400  # fmt: skip


def test_import_into_a_project_is_all_or_nothing(admin: httpx.Client, lisa: LisaServer, bob: httpx.Client) -> None:
    with new_user(admin, lisa, "projimport") as user:
        bobs_project = bob.post("/api/projects", json={"name": "bob's"}).json()["id"]
        doc = export_doc("Into project", [("user", "q")])
        assert user.post("/api/sessions/import", params={"project_id": bobs_project}, json=doc).status_code == 404
        assert user.get("/api/sessions").json()["data"] == []
        mine = user.post("/api/projects", json={"name": "mine"}).json()["id"]
        done = user.post("/api/sessions/import", params={"project_id": mine}, json=doc)
        assert done.status_code == 201 and done.json()["project_id"] == mine


def test_projects(admin: httpx.Client, lisa: LisaServer) -> None:
    with new_user(admin, lisa, "projects") as user:
        work = user.post("/api/projects", json={"name": "Work"})
        assert work.status_code == 201, work.text
        pid = work.json()["id"]
        assert user.patch(f"/api/projects/{pid}", json={"name": "Work 2"}).json()["name"] == "Work 2"
        assert user.get(f"/api/projects/{pid}").json()["name"] == "Work 2"
        assert [p["id"] for p in user.get("/api/projects").json()["data"]] == [pid]
        a = new_session(user, title="a", project_id=pid)["id"]
        b = new_session(user, title="b")["id"]
        assert user.patch(f"/api/sessions/{b}", json={"project_id": pid}).json()["project_id"] == pid
        listed = {s["id"] for s in user.get("/api/sessions", params={"project_id": pid}).json()["data"]}
        assert listed == {a, b}
        assert user.patch(f"/api/sessions/{b}", json={"project_id": None}).json()["project_id"] is None
        assert user.post("/api/projects", json={"name": ""}).status_code == 422
        assert user.post("/api/projects", json={"name": "x", "owner": "someone"}).status_code == 422
        # Deleting a project keeps its sessions by default (outside any project) ...
        assert user.delete(f"/api/projects/{pid}").status_code == 204
        assert user.get(f"/api/sessions/{a}").json()["project_id"] is None
        assert user.get(f"/api/projects/{pid}").status_code == 404
        # ... or deletes them with delete_sessions=true.
        other = user.post("/api/projects", json={"name": "Other"}).json()["id"]
        c = new_session(user, title="c", project_id=other)["id"]
        assert user.delete(f"/api/projects/{other}", params={"delete_sessions": "true"}).status_code == 204
        assert user.get(f"/api/sessions/{c}").status_code == 404
        assert user.get(f"/api/sessions/{a}").status_code == 200


def test_delete_all(admin: httpx.Client, lisa: LisaServer, alice: httpx.Client) -> None:
    keep = new_session(alice, title="alice keeps this")["id"]
    with new_user(admin, lisa, "wiper") as user:
        for n in range(3):
            new_session(user, title=f"w{n}")
        resp = user.delete("/api/sessions")
        assert resp.status_code == 200 and resp.json() == {"deleted": 3}
        assert user.get("/api/sessions").json()["data"] == []
    assert alice.get(f"/api/sessions/{keep}").status_code == 200  # nobody else's


def test_another_users_session_is_not_found_on_every_route(alice: httpx.Client, bob: httpx.Client) -> None:
    sid = new_session(alice, title="alice private")["id"]
    pid = alice.post("/api/projects", json={"name": "alice project"}).json()["id"]
    share = alice.post(f"/api/sessions/{sid}/share").json()
    calls = [
        ("GET", f"/api/sessions/{sid}", None),
        ("PATCH", f"/api/sessions/{sid}", {"title": "mine now"}),
        ("DELETE", f"/api/sessions/{sid}", None),
        ("GET", f"/api/sessions/{sid}/export", None),
        ("POST", f"/api/sessions/{sid}/share", None),
        ("DELETE", f"/api/sessions/{sid}/share", None),
        ("POST", f"/api/sessions/{sid}/messages", {"content": "hi", "model": "gemma3-270m"}),
        ("GET", f"/api/projects/{pid}", None),
        ("PATCH", f"/api/projects/{pid}", {"name": "mine now"}),
        ("DELETE", f"/api/projects/{pid}", None),
        ("POST", "/api/sessions", {"title": "into alice's", "project_id": pid}),
    ]
    for method, url, body in calls:
        resp = bob.request(method, url, json=body)
        assert resp.status_code == 404, (method, url, resp.status_code, resp.text)
    bobs = new_session(bob, title="bob's")["id"]
    assert bob.patch(f"/api/sessions/{bobs}", json={"project_id": pid}).status_code == 404
    assert sid not in {s["id"] for s in bob.get("/api/sessions", params={"q": "alice"}).json()["data"]}
    assert pid not in {p["id"] for p in bob.get("/api/projects").json()["data"]}
    assert bob.delete("/api/sessions").json()["deleted"] >= 1
    after = alice.get(f"/api/sessions/{sid}").json()
    assert after["title"] == "alice private" and after["shared"] is True
    assert alice.get(f"/api/projects/{pid}").status_code == 200
    assert alice.get(share["path"]).status_code == 200


@pytest.fixture(scope="module")
def restricted(admin: httpx.Client) -> Iterator[dict[str, str]]:
    tag = secrets.token_hex(3)
    model, repo = f"chat-share-model-{tag}", f"chat-share-repo-{tag}"
    body = {"id": model, "type": "textgen", "hosting": "internal", "base_url": "http://127.0.0.1:9/v1",
            "allowed_groups": ["team-a"]}  # fmt: skip
    assert admin.post("/api/models", json=body).status_code == 201
    assert admin.post("/api/repositories", json={"id": repo, "allowed_groups": ["team-b"]}).status_code == 201
    yield {"model": model, "repo": repo}
    admin.delete(f"/api/models/{model}")
    admin.delete(f"/api/repositories/{repo}")


def test_share_link_visibility_and_revoke(admin: httpx.Client, lisa: LisaServer, restricted: dict[str, str]) -> None:
    owner = new_user(admin, lisa, "sharer", ["team-a", "team-b"])
    team_a = new_user(admin, lisa, "reader-a", ["team-a"])
    team_ab = new_user(admin, lisa, "reader-ab", ["team-a", "team-b"])
    nobody = new_user(admin, lisa, "reader-none", [])
    with owner, team_a, team_ab, nobody:
        sid = new_session(owner, title="shared chat", model=restricted["model"])["id"]
        link = owner.post(f"/api/sessions/{sid}/share")
        assert link.status_code == 201, link.text
        token, path = link.json()["token"], link.json()["path"]
        assert len(token) > 40 and path == f"/api/shared/{token}"
        assert owner.get(f"/api/sessions/{sid}").json()["shared"] is True
        shared = team_a.get(path)
        assert shared.status_code == 200, shared.text
        assert shared.json()["title"] == "shared chat" and shared.json()["messages"] == []
        assert nobody.get(path).status_code == 404  # may not see the model
        assert admin.get(path).status_code == 200
        assert httpx.get(lisa.url + path).status_code == 401  # signed-in users only
        # A repository only team-b may see: team-a alone no longer qualifies.
        owner.patch(f"/api/sessions/{sid}", json={"rag": {"repositories": [restricted["repo"]]}})
        assert team_a.get(path).status_code == 404
        assert team_ab.get(path).status_code == 200
        # Read-only: the link gives no way to change anything.
        assert team_ab.patch(f"/api/sessions/{sid}", json={"title": "x"}).status_code == 404
        assert team_ab.post(path).status_code == 405
        # A new link replaces the old; revoking ends it.
        second = owner.post(f"/api/sessions/{sid}/share").json()["path"]
        assert team_ab.get(path).status_code == 404
        assert team_ab.get(second).status_code == 200
        assert owner.delete(f"/api/sessions/{sid}/share").status_code == 204
        assert team_ab.get(second).status_code == 404
        assert owner.get(second).status_code == 404
        assert owner.get(f"/api/sessions/{sid}").json()["shared"] is False
        assert team_ab.get("/api/shared/shr_guess").status_code == 404


def test_switching_branch_is_validated(alice: httpx.Client, bob: httpx.Client) -> None:
    doc = export_doc("Branches", [("user", "q"), ("assistant", "a1")])
    doc["messages"].append(copy.deepcopy(doc["messages"][1]) | {"id": "m2", "content": "a2"})
    doc["messages"][2]["created_at"] = "2026-01-01T00:00:05Z"
    session = alice.post("/api/sessions/import", json=doc).json()
    first, answer = session["messages"]
    assert answer["content"] == "a1"  # the leaf the export named
    assert len(answer["siblings"]) == 2 and answer["sibling_index"] == 0
    other = answer["siblings"][1]
    switched = alice.patch(f"/api/sessions/{session['id']}", json={"active_leaf_id": other}).json()
    assert [m["content"] for m in switched["messages"]] == ["q", "a2"]
    assert switched["messages"][1]["sibling_index"] == 1
    # Pointing at the question shows it continued by its newest answer.
    pointed = alice.patch(f"/api/sessions/{session['id']}", json={"active_leaf_id": first["id"]}).json()
    assert pointed["active_leaf_id"] == other
    bobs = new_session(bob, title="b")["id"]
    assert bob.patch(f"/api/sessions/{bobs}", json={"active_leaf_id": other}).status_code == 400
    assert alice.patch(f"/api/sessions/{session['id']}", json={"active_leaf_id": "msg_nope"}).status_code == 400

"""/api/assistants against the running server: admin-only writes, visibility by allowed_groups, every reference
checked (model, collections, templates), pinned template revisions; and ``AssistantService.resolve`` (what the chat
endpoint calls) on the server's own database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.assistants.service import AssistantService
from backend.auth.principal import Principal
from backend.db.engine import create_engine
from backend.errors import BadRequest, Conflict, NotFound
from backend.prompts.service import PromptTemplateService
from backend.rag.schemas import CollectionPublic
from backend.registry.schemas import ModelPublic
from tests.backend.rag.helpers import fresh_repository
from tests.support import LisaServer

AS = "/api/assistants"
PT = "/api/prompt-templates"
MODEL = "asst-textgen"
EMBEDDING = "asst-embedding"
REPO = "asst-repo"


@pytest.fixture(scope="module")
def world(admin: httpx.Client) -> Iterator[None]:
    """Two registered models (never called: an assistant only names one) and a repository with two collections."""
    for model in (
        {"id": MODEL, "type": "textgen", "hosting": "internal", "base_url": "http://127.0.0.5:8000/v1"},
        {"id": EMBEDDING, "type": "embedding", "hosting": "internal", "base_url": "http://127.0.0.5:8001/v1",
         "streaming": False},
    ):  # fmt: skip
        admin.delete(f"/api/models/{model['id']}")
        assert admin.post("/api/models", json=model).status_code == 201
    fresh_repository(admin, REPO)
    resp = admin.post(f"/api/repositories/{REPO}/collections", json={"id": "handbook", "name": "Handbook"})
    assert resp.status_code == 201, resp.text
    yield
    for assistant in admin.get(AS, params={"limit": 500}).json()["data"]:
        admin.delete(f"{AS}/{assistant['id']}")
    admin.delete(f"/api/repositories/{REPO}")
    for model_id in (MODEL, EMBEDDING):
        admin.delete(f"/api/models/{model_id}")


@pytest.fixture(scope="module")
def users(admin: httpx.Client, lisa: LisaServer) -> Iterator[dict[str, httpx.Client]]:
    clients = {}
    for name, groups in (("alice", ["team-a"]), ("bob", ["team-b"])):
        resp = admin.post("/api/tokens", json={"name": "assistants", "username": f"asst-{name}", "groups": groups})
        assert resp.status_code == 201, resp.text
        clients[name] = lisa.client(resp.json()["token"])
    yield clients
    for client in clients.values():
        client.close()


def template(client: httpx.Client, kind: str, body: str, sharing: str = "public") -> dict:
    resp = client.post(PT, json={"title": f"{kind} for assistants", "body": body, "kind": kind, "sharing": sharing})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def assistant(admin: httpx.Client, name: str, **fields: object) -> dict:
    resp = admin.post(AS, json={"name": name, "model_id": MODEL, **fields})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def names(client: httpx.Client) -> list[str]:
    resp = client.get(AS, params={"limit": 500})
    assert resp.status_code == 200, resp.text
    return [a["name"] for a in resp.json()["data"]]


def test_an_admin_bundles_everything_under_a_name(
    world: None, admin: httpx.Client, users: dict[str, httpx.Client]
) -> None:
    persona = template(admin, "persona", "You are a careful {{role}}.")
    directive = template(admin, "directive", "Cite your sources.")
    body = {
        "name": "Support desk",
        "description": "Answers from the handbook.",
        "model_id": MODEL,
        "model_args": {"max_tokens": 512, "temperature": 0.2, "top_p": 0.9, "stop": ["END"], "seed": 7},
        "persona": {"template_id": persona["id"]},
        "directives": [{"template_id": directive["id"]}],
        "collections": [{"repository_id": REPO, "collection_id": "handbook"},
                        {"repository_id": REPO, "collection_id": "default"}],
        "mcp_tools": ["tickets/create_ticket", "search-srv/web.search"],
    }  # fmt: skip
    resp = admin.post(AS, json=body)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["id"].startswith("asst-") and created["allowed_groups"] == []
    assert created["persona"] == {"template_id": persona["id"], "revision": 1, "text": None}
    assert created["directives"] == [{"template_id": directive["id"], "revision": 1}]
    assert created["model_args"] == body["model_args"] and created["collections"] == body["collections"]
    assert created["mcp_tools"] == body["mcp_tools"]
    me = admin.get("/api/users/me").json()["username"]
    assert created["created_by"] == me == created["updated_by"]
    # Everyone may read it (allowed_groups empty).
    for client in (users["alice"], users["bob"]):
        assert client.get(f"{AS}/{created['id']}").json() == created
        assert "Support desk" in names(client)
    events = admin.get("/api/audit", params={"action": "assistant.create", "resource_id": created["id"]}).json()
    assert len(events["data"]) == 1 and events["data"][0]["after"]["name"] == "Support desk"

    dup = admin.post(AS, json={"name": "Support desk", "model_id": MODEL})
    assert dup.status_code == 409 and "Support desk" in dup.json()["detail"]


def test_users_see_only_the_assistants_their_groups_allow(
    world: None, admin: httpx.Client, users: dict[str, httpx.Client]
) -> None:
    team_a = assistant(admin, "Team A helper", allowed_groups=["team-a", "team-a"])
    assert team_a["allowed_groups"] == ["team-a"]
    url = f"{AS}/{team_a['id']}"
    assert users["alice"].get(url).status_code == 200 and "Team A helper" in names(users["alice"])
    hidden = users["bob"].get(url)
    assert hidden.status_code == 404 and team_a["id"] in hidden.json()["detail"]
    assert "Team A helper" not in names(users["bob"])
    assert admin.get(url).status_code == 200  # admins see every assistant
    # Widening it: now bob sees it too.
    assert admin.patch(url, json={"allowed_groups": []}).status_code == 200
    assert users["bob"].get(url).status_code == 200


def test_writes_need_the_admin_group(world: None, admin: httpx.Client, users: dict[str, httpx.Client]) -> None:
    target = assistant(admin, "Admins only")
    alice = users["alice"]
    for resp in (
        alice.post(AS, json={"name": "Mine", "model_id": MODEL}),
        alice.patch(f"{AS}/{target['id']}", json={"name": "Taken over"}),
        alice.delete(f"{AS}/{target['id']}"),
    ):
        assert resp.status_code == 403 and "admin" in resp.json()["detail"], resp.text
    assert admin.get(f"{AS}/{target['id']}").json() == target
    assert "Mine" not in names(admin)


def test_every_reference_is_checked_and_nothing_is_written(
    world: None, admin: httpx.Client, users: dict[str, httpx.Client]
) -> None:
    persona = template(admin, "persona", "Persona text.")
    directive = template(admin, "directive", "Directive text.")
    private = template(users["alice"], "persona", "Alice's own.", sharing="private")
    before = names(admin)
    cases: list[tuple[dict, int, str]] = [
        ({"model_id": "no-such-model"}, 400, "no model 'no-such-model'"),
        ({"model_id": EMBEDDING}, 400, "textgen"),
        ({"collections": [{"repository_id": REPO, "collection_id": "nope"}]}, 400, "collections[0]"),
        ({"collections": [{"repository_id": "no-repo", "collection_id": "default"}]}, 400, "no-repo"),
        ({"persona": {"template_id": "pt-0"}}, 400, "persona: prompt template 'pt-0' not found"),
        ({"persona": {"template_id": directive["id"]}}, 400, "is a directive, not a persona"),
        ({"persona": {"template_id": persona["id"], "revision": 5}}, 400, "no revision 5"),
        ({"persona": {"template_id": private["id"]}}, 400, "not found"),  # another user's private template
        ({"directives": [{"template_id": directive["id"]}, {"template_id": persona["id"]}]}, 400, "directives[1]"),
        ({"persona": {"template_id": persona["id"], "text": "both"}}, 422, "exactly one"),
        ({"persona": {}}, 422, "exactly one"),
        ({"mcp_tools": ["no-slash"]}, 422, "mcp_tools"),
        ({"mcp_tools": ["srv/a", "srv/a"]}, 422, "listed twice"),
        ({"directives": [{"template_id": directive["id"]}] * 2}, 422, "listed twice"),
        ({"model_args": {"temperature": 2.5}}, 422, "temperature"),
        ({"model_args": {"max_tokens": 0}}, 422, "max_tokens"),
        ({"model_args": {"stop": ["a", "b", "c", "d", "e"]}}, 422, "stop"),
        ({"model_args": {"api_base": "http://evil"}}, 422, "api_base"),
        ({"model_args": {"seed": -1}}, 422, "seed"),
        ({"allowed_groups": [""]}, 422, "allowed_groups"),
        ({"owner": "me"}, 422, "owner"),
    ]
    for fields, status, fragment in cases:
        resp = admin.post(AS, json={"name": "Broken", "model_id": MODEL, **fields})
        assert resp.status_code == status and fragment in resp.json()["detail"], (fields, resp.text)
    assert admin.post(AS, json={"model_id": MODEL}).status_code == 422
    assert admin.post(AS, json={"name": "", "model_id": MODEL}).status_code == 422
    assert names(admin) == before


def test_updates_check_what_they_change(world: None, admin: httpx.Client) -> None:
    persona = template(admin, "persona", "Version one.")
    target = assistant(admin, "Changing", persona={"text": "Inline persona"})
    other = assistant(admin, "Other name")
    url = f"{AS}/{target['id']}"
    assert target["persona"] == {"template_id": None, "revision": None, "text": "Inline persona"}
    for body, status, fragment in (
        ({}, 422, "nothing to change"),
        ({"name": None}, 422, "name: cannot be null"),
        ({"model_id": "no-such-model"}, 400, "no-such-model"),
        ({"name": other["name"]}, 409, other["name"]),
        ({"collections": [{"repository_id": REPO, "collection_id": "nope"}]}, 400, "collections[0]"),
    ):
        resp = admin.patch(url, json=body)
        assert resp.status_code == status and fragment in resp.json()["detail"], (body, resp.text)
    assert admin.get(url).json() == target  # unchanged

    updated = admin.patch(url, json={"persona": {"template_id": persona["id"]}, "model_args": {"temperature": 1}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["persona"]["revision"] == 1 and updated.json()["model_args"]["temperature"] == 1
    assert updated.json()["updated_at"] > target["updated_at"]
    # A newer revision is taken only when asked for.
    assert admin.patch(f"{PT}/{persona['id']}", json={"body": "Version two."}).json()["revision"] == 2
    assert admin.get(url).json()["persona"]["revision"] == 1
    repinned = admin.patch(url, json={"persona": {"template_id": persona["id"]}}).json()
    assert repinned["persona"]["revision"] == 2
    removed = admin.patch(url, json={"persona": None}).json()
    assert removed["persona"] is None and removed["model_args"]["temperature"] == 1

    assert admin.patch(f"{AS}/asst-missing", json={"name": "x"}).status_code == 404
    assert admin.delete(url).status_code == 204
    assert admin.get(url).status_code == 404 and admin.delete(url).status_code == 404


class NoLookups:
    """resolve() needs neither the registry nor RAG; anything else calling them here is a test failure."""

    async def get(self, model_id: str, principal: Principal) -> ModelPublic:
        raise AssertionError("resolve looked up a model")

    async def collection(self, repository_id: str, collection_id: str, principal: Principal) -> CollectionPublic:
        raise AssertionError("resolve looked up a collection")


@pytest.fixture
async def engine(lisa: LisaServer) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(lisa.database_url, 2)
    yield engine
    await engine.dispose()


async def test_resolve_gives_a_chat_session_everything_with_pinned_texts(
    world: None, admin: httpx.Client, users: dict[str, httpx.Client], engine: AsyncEngine
) -> None:
    alice = users["alice"]
    persona = template(alice, "persona", "You are {{role}}.")  # alice's, public: the admin may use it
    directive = template(alice, "directive", "Answer in {{lang}}.")
    created = assistant(
        admin,
        "Resolved",
        model_args={"temperature": 0.5, "stop": ["###"]},
        persona={"template_id": persona["id"]},
        directives=[{"template_id": directive["id"]}],
        collections=[{"repository_id": REPO, "collection_id": "handbook"}],
        mcp_tools=["tickets/create_ticket"],
        allowed_groups=["team-a"],
    )
    # The owner edits the persona afterwards: the assistant keeps the revision it was saved with.
    assert alice.patch(f"{PT}/{persona['id']}", json={"body": "You are a pirate."}).status_code == 200

    templates = PromptTemplateService(engine)
    service = AssistantService(engine, templates, NoLookups(), NoLookups())
    who = alice.get("/api/users/me").json()
    principal = Principal(username=who["username"], groups=frozenset(who["groups"]), is_admin=False)
    resolved = await service.resolve(created["id"], principal)
    assert (resolved.id, resolved.name, resolved.model_id) == (created["id"], "Resolved", MODEL)
    assert resolved.model_args == {"temperature": 0.5, "stop": ["###"]}
    assert resolved.persona is not None
    assert (resolved.persona.text, resolved.persona.variables, resolved.persona.revision) == (
        "You are {{role}}.", ("role",), 1,
    )  # fmt: skip
    assert resolved.persona.filled({"role": "a librarian"}) == "You are a librarian."
    with pytest.raises(BadRequest, match="'role'"):
        resolved.persona.filled({})
    assert [d.text for d in resolved.directives] == ["Answer in {{lang}}."]
    assert [(c.repository_id, c.collection_id) for c in resolved.collections] == [(REPO, "handbook")]
    assert resolved.mcp_tools == ("tickets/create_ticket",)

    # The same rules as the API: bob's groups do not allow it.
    bob = Principal(username="asst-bob", groups=frozenset({"team-b"}), is_admin=False)
    with pytest.raises(NotFound):
        await service.resolve(created["id"], bob)
    # render(): what the chat endpoint calls to fill a template the user may see.
    assert await templates.render(persona["id"], principal, {}) == "You are a pirate."
    private = template(alice, "directive", "Only {{who}}.", sharing="private")
    assert await templates.render(private["id"], principal, {"who": "me"}) == "Only me."
    with pytest.raises(NotFound):
        await templates.render(private["id"], bob, {"who": "me"})

    # A template the assistant keeps is deleted: resolving says so (409), the assistant stays readable.
    assert alice.delete(f"{PT}/{directive['id']}").status_code == 204
    with pytest.raises(Conflict, match=directive["id"]):
        await service.resolve(created["id"], principal)
    assert alice.get(f"{AS}/{created['id']}").status_code == 200

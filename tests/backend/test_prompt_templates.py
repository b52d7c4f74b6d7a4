"""/api/prompt-templates against the running server: sharing across users (alice and carol in team-a, bob in
team-b), revisions and rollback, {{variable}} placeholders, bad inputs, and other users' templates."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support import LisaServer

PT = "/api/prompt-templates"


@pytest.fixture(scope="module")
def users(admin: httpx.Client, lisa: LisaServer) -> Iterator[dict[str, httpx.Client]]:
    clients = {}
    for name, groups in (("alice", ["team-a"]), ("bob", ["team-b"]), ("carol", ["team-a"])):
        body = {"name": "prompts", "username": f"pt-{name}", "groups": groups}
        resp = admin.post("/api/tokens", json=body)
        assert resp.status_code == 201, resp.text
        clients[name] = lisa.client(resp.json()["token"])
    yield clients
    for client in clients.values():
        client.close()


def make(client: httpx.Client, **fields: object) -> dict:
    body = {"title": "A template", "body": "Be brief.", "kind": "persona", **fields}
    resp = client.post(PT, json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def ids(client: httpx.Client, **params: str) -> list[str]:
    resp = client.get(PT, params={"limit": 500, **params})
    assert resp.status_code == 200, resp.text
    return [t["id"] for t in resp.json()["data"]]


def test_create_and_get_with_its_variables(users: dict[str, httpx.Client]) -> None:
    alice = users["alice"]
    me = alice.get("/api/users/me").json()["username"]
    body = "You are {{ role }}. Speak to {{audience}} as {{role}} would. {{ not a name }} and {single} stay."
    created = make(alice, title="Role play", body=body)
    assert created["owner"] == me and created["kind"] == "persona" and created["sharing"] == "private"
    assert created["variables"] == ["role", "audience"] and created["revision"] == 1 and created["groups"] == []
    assert created["id"].startswith("pt-")
    assert alice.get(f"{PT}/{created['id']}").json() == created
    assert created["id"] in ids(alice, scope="mine")


def test_a_private_template_is_invisible_to_everyone_else(users: dict[str, httpx.Client], admin: httpx.Client) -> None:
    template = make(users["alice"], body="Secret {{x}}")
    url = f"{PT}/{template['id']}"
    for other in (users["bob"], users["carol"], admin):  # admins too: private stays private
        assert other.get(url).status_code == 404
        assert other.patch(url, json={"title": "mine now"}).status_code == 404
        assert other.delete(url).status_code == 404
        assert other.get(f"{url}/revisions").status_code == 404
        assert other.post(f"{url}/revisions/1/restore").status_code == 404
        assert other.post(f"{url}/render", json={"variables": {"x": "1"}}).status_code == 404
        assert template["id"] not in ids(other)
    missing = users["bob"].get(url)
    assert template["id"] in missing.json()["detail"] and "not found" in missing.json()["detail"]
    assert users["alice"].get(url).json()["title"] == "A template"  # untouched


def test_group_sharing_lets_members_use_but_not_change(users: dict[str, httpx.Client], admin: httpx.Client) -> None:
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    template = make(alice, kind="directive", body="Answer in {{lang}}.", sharing="groups", groups=["team-a"])
    url = f"{PT}/{template['id']}"
    assert carol.get(url).status_code == 200
    assert template["id"] in ids(carol, scope="shared") and template["id"] not in ids(carol, scope="mine")
    assert template["id"] not in ids(alice, scope="shared")  # one's own are "mine", not "shared with me"
    assert bob.get(url).status_code == 404 and template["id"] not in ids(bob)

    rendered = carol.post(f"{url}/render", json={"variables": {"lang": "French"}})
    assert rendered.status_code == 200 and rendered.json()["text"] == "Answer in French."
    # Seen, not owned: 403 (it would be a lie to say it does not exist), nothing changes.
    for resp in (
        carol.patch(url, json={"body": "Answer in Klingon."}),
        carol.get(f"{url}/revisions"),
        carol.post(f"{url}/revisions/1/restore"),
        carol.delete(url),
        admin.patch(url, json={"body": "Admins do not edit other people's prompts."}),
    ):
        assert resp.status_code == 403 and "owner" in resp.json()["detail"], resp.text
    assert alice.get(url).json() == template

    # Admins see every group-shared template and may delete it (recorded in the audit log).
    assert admin.get(url).status_code == 200
    assert admin.delete(url).status_code == 204
    assert alice.get(url).status_code == 404
    events = admin.get("/api/audit", params={"action": "prompt_template.delete", "resource_id": template["id"]})
    assert [e["before"]["owner"] for e in events.json()["data"]] == [template["owner"]]


def test_one_shares_only_with_ones_own_groups(users: dict[str, httpx.Client], admin: httpx.Client) -> None:
    before = ids(users["alice"], scope="mine")
    refused = users["alice"].post(
        PT, json={"title": "t", "body": "b", "kind": "persona", "sharing": "groups", "groups": ["team-a", "team-b"]}
    )
    assert refused.status_code == 400 and "'team-b'" in refused.json()["detail"], refused.text
    assert "'team-a'" not in refused.json()["detail"]
    assert ids(users["alice"], scope="mine") == before  # nothing written
    # An admin may share with any group.
    shared = make(admin, sharing="groups", groups=["team-b", "team-b"])
    assert shared["groups"] == ["team-b"]
    assert users["bob"].get(f"{PT}/{shared['id']}").status_code == 200
    assert users["alice"].get(f"{PT}/{shared['id']}").status_code == 404
    assert admin.delete(f"{PT}/{shared['id']}").status_code == 204


def test_public_templates_are_seen_by_everyone_and_changed_by_the_owner(users: dict[str, httpx.Client]) -> None:
    template = make(users["alice"], title="Public persona", sharing="public")
    url = f"{PT}/{template['id']}"
    for other in (users["bob"], users["carol"]):
        assert other.get(url).status_code == 200
        assert template["id"] in ids(other, scope="public")
        assert other.patch(url, json={"title": "x"}).status_code == 403
    assert users["bob"].delete(url).status_code == 403
    # The owner narrows it again: gone for the others.
    assert users["alice"].patch(url, json={"sharing": "private"}).json()["sharing"] == "private"
    assert users["bob"].get(url).status_code == 404


def test_every_update_is_a_revision_and_a_restore_is_one_more(users: dict[str, httpx.Client]) -> None:
    alice = users["alice"]
    template = make(alice, title="v1", body="First {{a}}")
    url = f"{PT}/{template['id']}"
    second = alice.patch(url, json={"title": "v2", "body": "Second {{b}}"}).json()
    assert second["revision"] == 2 and second["variables"] == ["b"] and second["updated_at"] >= template["updated_at"]
    third = alice.patch(url, json={"kind": "directive", "sharing": "public"}).json()
    assert third["revision"] == 3 and third["kind"] == "directive" and third["title"] == "v2"

    revisions = alice.get(f"{url}/revisions").json()
    assert [r["revision"] for r in revisions["data"]] == [3, 2, 1] and revisions["next_cursor"] is None
    first = revisions["data"][2]
    assert (first["title"], first["body"], first["kind"], first["variables"]) == ("v1", "First {{a}}", "persona", ["a"])
    assert first["created_by"] == template["owner"] and first["restored_from"] is None

    # Paged, newest first.
    page = alice.get(f"{url}/revisions", params={"limit": 2}).json()
    assert [r["revision"] for r in page["data"]] == [3, 2] and page["next_cursor"]
    rest = alice.get(f"{url}/revisions", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [r["revision"] for r in rest["data"]] == [1] and rest["next_cursor"] is None

    # Rollback: a new revision with revision 1's content; the sharing stays as it is now.
    restored = alice.post(f"{url}/revisions/1/restore")
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert (body["revision"], body["title"], body["body"], body["kind"]) == (4, "v1", "First {{a}}", "persona")
    assert body["sharing"] == "public" and body["variables"] == ["a"]
    latest = alice.get(f"{url}/revisions", params={"limit": 1}).json()["data"][0]
    assert latest["revision"] == 4 and latest["restored_from"] == 1
    assert alice.get(url).json() == body

    missing = alice.post(f"{url}/revisions/99/restore")
    assert missing.status_code == 404 and "no revision 99" in missing.json()["detail"]
    assert alice.post(f"{url}/revisions/0/restore").status_code == 422
    assert alice.get(url).json()["revision"] == 4  # nothing written

    # Deleting the template deletes its history.
    assert alice.delete(url).status_code == 204
    assert alice.get(f"{url}/revisions").status_code == 404
    assert alice.delete(url).status_code == 404


def test_placeholders_are_filled_and_missing_ones_named(users: dict[str, httpx.Client]) -> None:
    alice = users["alice"]
    template = make(alice, body="Dear {{ name }}, about {{topic}}: {{name}}, {{topic}} and {{tone}}.")
    url = f"{PT}/{template['id']}/render"
    missing = alice.post(url, json={"variables": {"name": "Ann"}})
    assert missing.status_code == 400
    detail = missing.json()["detail"]
    assert "'topic'" in detail and "'tone'" in detail and "'name'" not in detail.split("missing")[1].split(";")[0]
    assert alice.post(url, json={}).status_code == 400  # none given: all three missing
    assert "'name', 'topic', 'tone'" in alice.post(url, json={}).json()["detail"]

    extra = alice.post(url, json={"variables": {"name": "a", "topic": "b", "tone": "c", "tpoic": "typo"}})
    assert extra.status_code == 400 and "unknown variables 'tpoic'" in extra.json()["detail"]

    # One pass: a value holding {{...}} is inserted as it is.
    ok = alice.post(url, json={"variables": {"name": "{{topic}}", "topic": "RAG", "tone": ""}})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {
        "template_id": template["id"],
        "revision": 1,
        "kind": "persona",
        "text": "Dear {{topic}}, about RAG: {{topic}}, RAG and .",
    }
    plain = make(alice, body="No variables here {{ 1x }}.")
    assert plain["variables"] == []
    assert alice.post(f"{PT}/{plain['id']}/render", json={}).json()["text"] == "No variables here {{ 1x }}."


def test_list_filters_search_and_pages(users: dict[str, httpx.Client]) -> None:
    bob = users["bob"]
    made = [
        make(bob, title="Pirate persona", body="Talk like a pirate."),
        make(bob, title="Summary", kind="directive", body="Summarise in 100% plain_words."),
        make(bob, title="Reviewer", body="Review the CODE carefully."),
    ]
    mine = ids(bob, scope="mine")
    assert mine[:3] == [t["id"] for t in reversed(made)]  # newest first
    assert ids(bob, scope="mine", kind="directive") == [made[1]["id"]]
    assert ids(bob, scope="mine", q="PIRATE") == [made[0]["id"]]  # title, any case (mine: the server is shared)
    assert ids(bob, scope="mine", q="code care") == [made[2]["id"]]  # body
    assert ids(bob, scope="mine", q="100% plain_") == [made[1]["id"]]  # % and _ are plain characters
    assert ids(bob, scope="mine", q="100%% plain") == []

    first = bob.get(PT, params={"scope": "mine", "limit": 2}).json()
    assert [t["id"] for t in first["data"]] == mine[:2] and first["next_cursor"]
    second = bob.get(PT, params={"scope": "mine", "limit": 2, "cursor": first["next_cursor"]}).json()
    assert [t["id"] for t in second["data"]] == mine[2:4]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"body": "b", "kind": "persona"}, "title"),
        ({"title": "t", "body": "b", "kind": "system"}, "kind"),
        ({"title": "t", "body": "", "kind": "persona"}, "body"),
        ({"title": "t", "body": "x" * 100_001, "kind": "persona"}, "body"),
        ({"title": "t\x00", "body": "b", "kind": "persona"}, "NUL"),
        ({"title": "t", "body": "b", "kind": "persona", "owner": "someone-else"}, "owner"),
        ({"title": "t", "body": "b", "kind": "persona", "sharing": "groups"}, "needs at least one group"),
        ({"title": "t", "body": "b", "kind": "persona", "groups": ["team-a"]}, "'groups' are for sharing"),
        ({"title": "t", "body": "b", "kind": "persona", "sharing": "everyone"}, "sharing"),
    ],
)
def test_bad_templates_are_refused(users: dict[str, httpx.Client], body: dict, fragment: str) -> None:
    resp = users["carol"].post(PT, json=body)
    assert resp.status_code == 422, resp.text
    assert fragment in resp.json()["detail"]


def test_bad_updates_change_nothing(users: dict[str, httpx.Client]) -> None:
    alice = users["alice"]
    template = make(alice, sharing="groups", groups=["team-a"])
    url = f"{PT}/{template['id']}"
    for body, status, fragment in (
        ({}, 422, "nothing to change"),
        ({"title": None}, 422, "title: cannot be null"),
        ({"revision": 7}, 422, "revision"),
        ({"groups": []}, 400, "needs at least one group"),
        ({"groups": ["team-b"]}, 400, "'team-b'"),
        ({"sharing": "private", "groups": ["team-a"]}, 400, "'groups' are for sharing"),
    ):
        resp = alice.patch(url, json=body)
        assert resp.status_code == status and fragment in resp.json()["detail"], (body, resp.text)
    assert alice.get(url).json() == template
    assert len(alice.get(f"{url}/revisions").json()["data"]) == 1
    # Leaving group sharing drops the groups.
    private = alice.patch(url, json={"sharing": "private"}).json()
    assert private["groups"] == [] and private["revision"] == 2
    assert users["carol"].get(url).status_code == 404


def test_bad_list_parameters(users: dict[str, httpx.Client]) -> None:
    bob = users["bob"]
    assert bob.get(PT, params={"scope": "everything"}).status_code == 422
    assert bob.get(PT, params={"kind": "system"}).status_code == 422
    assert bob.get(PT, params={"q": "x" * 201}).status_code == 422
    assert bob.get(PT, params={"cursor": "not a cursor!"}).status_code == 400
    assert bob.get(f"{PT}/pt-0/revisions").status_code == 404


def test_concurrent_updates_each_get_their_own_revision(users: dict[str, httpx.Client]) -> None:
    """Updates of one template are serialised on its row: numbers neither collide (a 500) nor skip."""
    alice = users["alice"]
    url = f"{PT}/{make(alice, title='busy')['id']}"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: alice.patch(url, json={"body": f"edit {i}"}), range(12)))
    assert sorted(resp.status_code for resp in answers) == [200] * 12
    assert sorted(resp.json()["revision"] for resp in answers) == list(range(2, 14))
    history = alice.get(f"{url}/revisions").json()["data"]
    assert [r["revision"] for r in history] == list(range(13, 0, -1))
    final = alice.get(url).json()
    assert final["revision"] == 13 and final["body"] == history[0]["body"]

"""Token lifetime: a token never outlives the token that created it, revoking a token revokes the tokens made
with it (in every process), and admins can list and revoke all of one user's tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.support import LisaServer


def issue(admin: httpx.Client, username: str, **extra: object) -> dict:
    resp = admin.post("/api/tokens", json={"name": f"for {username}", "username": username, **extra})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def status_on(server: LisaServer, token: dict) -> httpx.Response:
    with server.client(token["token"]) as client:
        return client.get("/v1/models")


def test_a_token_cannot_outlive_the_token_that_creates_it(
    admin: httpx.Client, lisa: LisaServer, lisa_peer: LisaServer
) -> None:
    parent = issue(admin, "lifetime-user", groups=["team-a"], expires_in_days=1)
    parent_expiry = datetime.fromisoformat(parent["expires_at"])
    with lisa.client(parent["token"]) as user:
        refused = user.post("/api/tokens", json={"name": "a month", "expires_in_days": 30})
        assert refused.status_code == 400 and "outlive" in refused.json()["detail"]
        later = (parent_expiry + timedelta(hours=1)).isoformat()
        assert user.post("/api/tokens", json={"name": "later", "expires_at": later}).status_code == 400
        # Without an explicit expiry, the default is cut to the creator's.
        child = user.post("/api/tokens", json={"name": "child"}).json()
    assert datetime.fromisoformat(child["expires_at"]) <= parent_expiry and child["parent_id"] == parent["id"]
    with lisa_peer.client(child["token"]) as child_client:
        grandchild = child_client.post("/api/tokens", json={"name": "grandchild", "groups": []}).json()
    assert grandchild["parent_id"] == child["id"]
    for server in (lisa, lisa_peer):  # all three valid, and cached as valid, in both processes
        assert all(status_on(server, t).status_code == 200 for t in (parent, child, grandchild))
    # Revoking the parent revokes everything made with it, however deep, in every process.
    with lisa.client(parent["token"]) as user:
        assert user.delete(f"/api/tokens/{parent['id']}").status_code == 204
    for server in (lisa, lisa_peer):
        for token in (parent, child, grandchild):
            resp = status_on(server, token)
            assert resp.status_code == 401 and "revoked" in resp.json()["error"]["message"], token["name"]
    shown = admin.get(f"/api/tokens/{grandchild['id']}").json()
    assert shown["active"] is False and shown["revoked_at"] is not None


def test_admins_list_and_revoke_all_of_one_users_tokens(admin: httpx.Client, lisa: LisaServer) -> None:
    first = issue(admin, "sweep-user", groups=["team-a"])
    second = issue(admin, "sweep-user", groups=[])
    with lisa.client(first["token"]) as user:
        own = user.post("/api/tokens", json={"name": "self-made"}).json()
        bystander = issue(admin, "sweep-bystander")
        # A user sees and revokes only their own.
        assert user.get("/api/tokens", params={"username": "sweep-bystander"}).status_code == 403
        assert user.delete("/api/tokens", params={"username": "sweep-bystander"}).status_code == 403
    listed = admin.get("/api/tokens", params={"username": "sweep-user"}).json()["data"]
    assert {t["id"] for t in listed} == {first["id"], second["id"], own["id"]}
    assert {t["username"] for t in listed} == {"sweep-user"}
    swept = admin.delete("/api/tokens", params={"username": "sweep-user"})
    assert swept.status_code == 200 and swept.json() == {"revoked": 3}
    assert all(status_on(lisa, t).status_code == 401 for t in (first, second, own))
    assert status_on(lisa, bystander).status_code == 200
    assert admin.delete("/api/tokens", params={"username": "sweep-user"}).json() == {"revoked": 0}
    assert admin.delete("/api/tokens").status_code == 422  # whose tokens must be said
    trail = admin.get("/api/audit", params={"resource_id": own["id"]}).json()["data"]
    assert [e["action"] for e in trail] == ["token.revoke", "token.create"]
    # Anyone may revoke all of their own.
    with lisa.client(bystander["token"]) as user:
        assert user.delete("/api/tokens", params={"username": "sweep-bystander"}).json() == {"revoked": 1}
    assert status_on(lisa, bystander).status_code == 401


def test_a_token_an_admin_issues_for_someone_else_does_not_carry_the_admins_groups(admin: httpx.Client) -> None:
    issued = issue(admin, "plain-user")
    assert issued["groups"] == [] and issued["display_name"] == "plain-user"
    assert admin.post("/api/tokens", json={"name": "x", "username": "not a name"}).status_code == 400
    assert admin.post("/api/tokens", json={"name": "x", "username": "oidc:nobody"}).status_code == 404
    assert datetime.fromisoformat(issued["expires_at"]) > datetime.now(UTC) + timedelta(days=80)

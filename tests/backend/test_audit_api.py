"""Every admin write is in the audit log: who, what, when, before and after, with secrets masked."""

from __future__ import annotations

import httpx

from tests.support import LisaServer


def events(admin: httpx.Client, **params: str) -> list[dict]:
    resp = admin.get("/api/audit", params={"limit": 500, **params})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


def test_model_writes_are_audited_with_secrets_masked(admin: httpx.Client) -> None:
    admin.delete("/api/models/audited")
    secret = "sk-audit-secret-123"
    body = {
        "id": "audited",
        "type": "textgen",
        "hosting": "third_party",
        "provider_model": "openai/x",
        "api_key": secret,
    }
    assert admin.post("/api/models", json=body).status_code == 201
    assert admin.patch("/api/models/audited", json={"context_window": 2048}).status_code == 200
    assert admin.delete("/api/models/audited").status_code == 204
    assert admin.patch("/api/models/audited", json={"context_window": 1}).status_code == 404  # failed: not audited

    trail = events(admin, resource_type="model", resource_id="audited")
    actions = [e["action"] for e in trail]
    assert actions[:3] == ["model.delete", "model.update", "model.create"]  # newest first
    delete, update, create = trail[:3]
    assert all(e["actor"] == "admin" and e["actor_token_id"] for e in (delete, update, create))
    assert create["before"] is None and create["after"]["provider_model"] == "openai/x"
    assert create["after"]["api_key_encrypted"] == "***"
    assert update["before"]["context_window"] is None and update["after"]["context_window"] == 2048
    assert delete["after"] is None and delete["before"]["id"] == "audited"
    raw = admin.get("/api/audit", params={"resource_id": "audited"}).text
    assert secret not in raw
    assert create["at"] <= update["at"] <= delete["at"]


def test_token_writes_are_audited_without_the_secret(admin: httpx.Client) -> None:
    created = admin.post("/api/tokens", json={"name": "audit-me", "username": "dora", "groups": ["x"]}).json()
    assert admin.delete(f"/api/tokens/{created['id']}").status_code == 204
    trail = events(admin, resource_type="token", resource_id=created["id"])
    assert [e["action"] for e in trail] == ["token.revoke", "token.create"]
    assert trail[1]["after"]["username"] == "dora" and trail[1]["after"]["groups"] == ["x"]
    assert trail[0]["before"]["revoked_at"] is None and trail[0]["after"]["revoked_at"]
    raw = admin.get("/api/audit", params={"resource_id": created["id"]}).text
    assert created["token"] not in raw


def test_audit_filters_paging_and_access(admin: httpx.Client, lisa: LisaServer) -> None:
    for i in range(3):
        admin.post("/api/tokens", json={"name": f"audit-page-{i}"})
    first = admin.get("/api/audit", params={"limit": 2, "action": "token.create"}).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    second = admin.get(
        "/api/audit", params={"limit": 2, "action": "token.create", "cursor": first["next_cursor"]}
    ).json()
    assert int(second["data"][0]["id"]) < int(first["data"][-1]["id"])
    assert all(e["action"] == "token.create" for e in first["data"] + second["data"])
    assert admin.get("/api/audit", params={"cursor": "!!"}).status_code == 400
    assert events(admin, actor="nobody-at-all") == []
    user = admin.post("/api/tokens", json={"name": "peek", "username": "peeker", "groups": []}).json()
    assert lisa.client(user["token"]).get("/api/audit").status_code == 403

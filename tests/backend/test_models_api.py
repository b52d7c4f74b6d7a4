"""/api/models against two databases: the embedded PostgreSQL (Unix socket) and a second one over TCP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from backend.db.engine import asyncpg_dsn
from tests.support import LisaServer


@pytest.fixture(params=["embedded", "tcp"], scope="module")
def server(request: pytest.FixtureRequest) -> LisaServer:
    return request.getfixturevalue("lisa" if request.param == "embedded" else "lisa_tcp")


@pytest.fixture
def api(server: LisaServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def user_client(api: httpx.Client, server: LisaServer, username: str, groups: list[str]) -> httpx.Client:
    token = api.post("/api/tokens", json={"name": "t", "username": username, "groups": groups}).json()["token"]
    return server.client(token)


# Registered addresses pass the egress guard: loopback is allowed by default (private ones are not).
INTERNAL = {"id": "reg-internal", "type": "textgen", "hosting": "internal", "base_url": "http://127.0.0.5:8000/v1/"}


def test_create_get_update_delete(api: httpx.Client) -> None:
    api.delete("/api/models/reg-internal")
    created = api.post(
        "/api/models", json={**INTERNAL, "features": ["tool_calls", "reasoning"], "context_window": 8192}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["base_url"] == "http://127.0.0.5:8000/v1"  # normalised
    assert body["streaming"] is True and body["status"] == "InService" and body["name"] == "reg-internal"
    assert body["features"] == ["reasoning", "tool_calls"] and body["context_window"] == 8192
    assert api.get("/api/models/reg-internal").json() == body

    updated = api.patch("/api/models/reg-internal", json={"context_window": 4096, "allowed_groups": ["research"]})
    assert updated.status_code == 200
    assert updated.json()["context_window"] == 4096 and updated.json()["allowed_groups"] == ["research"]
    assert updated.json()["updated_at"] > body["updated_at"]

    assert api.delete("/api/models/reg-internal").status_code == 204
    assert api.get("/api/models/reg-internal").status_code == 404
    assert api.delete("/api/models/reg-internal").status_code == 404


def test_duplicate_is_409_and_unknown_is_404(api: httpx.Client) -> None:
    api.delete("/api/models/reg-dup")
    assert api.post("/api/models", json={**INTERNAL, "id": "reg-dup"}).status_code == 201
    dup = api.post("/api/models", json={**INTERNAL, "id": "reg-dup", "base_url": "http://127.0.0.6:1/v1"})
    assert dup.status_code == 409 and "already exists" in dup.json()["detail"]
    assert api.get("/api/models/reg-dup").json()["base_url"] == "http://127.0.0.5:8000/v1"  # untouched
    missing = api.patch("/api/models/never-was", json={"context_window": 5})
    assert missing.status_code == 404 and "never-was" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (
            {"id": "e1", "type": "embedding", "hosting": "internal", "base_url": "http://h:1/v1", "streaming": True},
            422,
            "cannot stream",
        ),
        ({"id": "t1", "type": "textgen", "hosting": "third_party"}, 422, "provider_model"),
        ({"id": "i1", "type": "textgen", "hosting": "internal"}, 422, "base_url"),
        ({"id": "x1", "type": "video", "hosting": "internal", "base_url": "http://h:1/v1"}, 422, "type"),
        ({"id": "bad id!", "type": "textgen", "hosting": "internal", "base_url": "http://h:1/v1"}, 422, "id"),
        (
            {
                "id": "f1",
                "type": "textgen",
                "hosting": "internal",
                "base_url": "http://h:1/v1",
                "features": ["telepathy"],
            },
            422,
            "features",
        ),
        ({"id": "u1", "type": "textgen", "hosting": "internal", "base_url": "not a url"}, 422, "base_url"),
        (
            {"id": "k1", "type": "textgen", "hosting": "internal", "base_url": "http://h:1/v1", "colour": "red"},
            422,
            "colour",
        ),
    ],
)
def test_invalid_models_are_rejected_and_nothing_is_written(
    api: httpx.Client, body: dict, status: int, fragment: str
) -> None:
    resp = api.post("/api/models", json=body)
    assert resp.status_code == status, resp.text
    assert fragment in resp.json()["detail"]
    if isinstance(body.get("id"), str) and "/" not in body["id"]:
        assert api.get(f"/api/models/{body['id']}").status_code == 404


def test_malformed_json_is_400(api: httpx.Client) -> None:
    resp = api.post("/api/models", content=b"{nope", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "JSON" in resp.json()["detail"]


def test_update_keeps_the_model_consistent(api: httpx.Client) -> None:
    api.delete("/api/models/reg-emb")
    emb = {"id": "reg-emb", "type": "embedding", "hosting": "internal", "base_url": "http://127.0.0.1:1/v1"}
    assert api.post("/api/models", json=emb).json()["streaming"] is False
    resp = api.patch("/api/models/reg-emb", json={"streaming": True})
    assert resp.status_code == 400 and "cannot stream" in resp.json()["detail"]
    assert api.get("/api/models/reg-emb").json()["streaming"] is False


def test_api_key_is_never_returned_and_stored_encrypted(api: httpx.Client, server: LisaServer) -> None:
    api.delete("/api/models/reg-keyed")
    secret = "sk-live-very-secret-value"
    body = {
        "id": "reg-keyed",
        "type": "textgen",
        "hosting": "third_party",
        "provider_model": "openai/gpt-4o-mini",
        "api_key": secret,
    }
    created = api.post("/api/models", json=body)
    assert created.status_code == 201 and secret not in created.text
    assert created.json()["has_api_key"] is True
    for resp in (api.get("/api/models/reg-keyed"), api.get("/api/models", params={"limit": 500})):
        assert secret not in resp.text
    stored = asyncio.run(_fetch_key(server.database_url))
    assert stored and secret not in stored
    cleared = api.patch("/api/models/reg-keyed", json={"api_key": None})
    assert cleared.json()["has_api_key"] is False


async def _fetch_key(url: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return str(await conn.fetchval("SELECT api_key_encrypted FROM models WHERE id = 'reg-keyed'"))
    finally:
        await conn.close()


def test_list_is_paged_with_an_opaque_cursor(api: httpx.Client) -> None:
    for i in range(5):
        api.delete(f"/api/models/page-{i}")
        api.post("/api/models", json={**INTERNAL, "id": f"page-{i}"})
    seen: list[str] = []
    cursor = None
    while True:
        page = api.get("/api/models", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["data"]) <= 2
        seen += [m["id"] for m in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert {f"page-{i}" for i in range(5)} <= set(seen)
    assert len(seen) == len(set(seen)) and seen == sorted(seen)
    assert api.get("/api/models", params={"cursor": "%%%"}).status_code == 400


def test_writes_need_admin_and_allowed_groups_filter_reads(api: httpx.Client, server: LisaServer) -> None:
    for model_id, groups in (("grp-research", ["research"]), ("grp-open", [])):
        api.delete(f"/api/models/{model_id}")
        api.post("/api/models", json={**INTERNAL, "id": model_id, "allowed_groups": groups})
    researcher = user_client(api, server, "rita", ["research"])
    outsider = user_client(api, server, "omar", ["sales"])
    assert researcher.post("/api/models", json={**INTERNAL, "id": "sneaky"}).status_code == 403
    assert researcher.delete("/api/models/grp-open").status_code == 403
    assert researcher.patch("/api/models/grp-open", json={"context_window": 1}).status_code == 403
    visible = {m["id"] for m in outsider.get("/api/models", params={"limit": 500}).json()["data"]}
    assert "grp-open" in visible and "grp-research" not in visible
    assert outsider.get("/api/models/grp-research").status_code == 404
    assert researcher.get("/api/models/grp-research").status_code == 200
    v1 = {m["id"] for m in outsider.get("/v1/models").json()["data"]}
    assert "grp-research" not in v1 and "grp-open" in v1
    resp = outsider.post(
        "/v1/chat/completions", json={"model": "grp-research", "messages": [{"role": "user", "content": "x"}]}
    )
    assert resp.status_code == 404

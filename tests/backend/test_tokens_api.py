"""/api/tokens: the secret is shown once, only its SHA-256 hash is stored, expiry is required and enforced."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from backend.db.engine import asyncpg_dsn
from tests.support import LisaServer


async def _token_rows(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return list(await conn.fetch("SELECT * FROM api_tokens"))
    finally:
        await conn.close()


def test_secret_shown_once_and_stored_only_as_sha256(admin: httpx.Client, lisa: LisaServer) -> None:
    created = admin.post("/api/tokens", json={"name": "notebook"})
    assert created.status_code == 201
    body = created.json()
    secret = body["token"]
    assert secret.startswith("lisa_") and len(secret) > 40 and body["prefix"] == secret[: len(body["prefix"])]
    expires = datetime.fromisoformat(body["expires_at"])
    listed = admin.get("/api/tokens").json()["data"]
    assert body["id"] in {t["id"] for t in listed}
    assert secret not in admin.get("/api/tokens").text and secret not in admin.get(f"/api/tokens/{body['id']}").text
    rows = asyncio.run(_token_rows(lisa.database_url))
    # The default is 90 days, capped at the expiry of the admin token that creates it (made when the session began).
    creator = next(r for r in rows if r["token_hash"] == hashlib.sha256(lisa.token.encode()).hexdigest())
    expected = min(datetime.now(UTC) + timedelta(days=90), creator["expires_at"])
    assert abs(expires - expected) < timedelta(minutes=1)
    row = next(r for r in rows if r["id"] == body["id"])
    assert row["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(value) for r in rows for value in r.values())


def test_expiry_rules(admin: httpx.Client) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    resp = admin.post("/api/tokens", json={"name": "old", "expires_at": past})
    assert resp.status_code == 400 and "future" in resp.json()["detail"]
    resp = admin.post("/api/tokens", json={"name": "forever", "expires_in_days": 4000})
    assert resp.status_code == 422
    resp = admin.post("/api/tokens", json={"name": "long", "expires_in_days": 400})
    assert resp.status_code == 400 and "365" in resp.json()["detail"]
    assert admin.post("/api/tokens", json={"name": ""}).status_code == 422


def test_users_manage_only_their_own_tokens(admin: httpx.Client, lisa: LisaServer) -> None:
    alice_token = admin.post(
        "/api/tokens", json={"name": "a", "username": "alice", "groups": ["team-a", "team-b"]}
    ).json()
    bob_token = admin.post("/api/tokens", json={"name": "b", "username": "bob", "groups": ["team-a"]}).json()
    alice = lisa.client(alice_token["token"])
    # Narrowed to a subset of her groups: fine. Widened, or for someone else: forbidden.
    narrowed = alice.post("/api/tokens", json={"name": "narrow", "groups": ["team-b"]})
    assert narrowed.status_code == 201 and narrowed.json()["groups"] == ["team-b"]
    assert alice.post("/api/tokens", json={"name": "wide", "groups": ["admin"]}).status_code == 403
    assert alice.post("/api/tokens", json={"name": "x", "username": "bob"}).status_code == 403
    mine = {t["username"] for t in alice.get("/api/tokens").json()["data"]}
    assert mine == {"alice"}
    assert alice.get("/api/tokens", params={"all_users": "true"}).status_code == 403
    assert alice.get(f"/api/tokens/{bob_token['id']}").status_code == 404
    assert alice.delete(f"/api/tokens/{bob_token['id']}").status_code == 404
    assert lisa.client(bob_token["token"]).get("/v1/models").status_code == 200
    everyone = {
        t["username"] for t in admin.get("/api/tokens", params={"all_users": "true", "limit": 500}).json()["data"]
    }
    assert {"alice", "bob", "admin"} <= everyone
    # Non-admins cannot reach admin routes with their tokens.
    assert alice.get("/api/usage").status_code == 403


def test_revoke_own_token(admin: httpx.Client, lisa: LisaServer) -> None:
    created = admin.post("/api/tokens", json={"name": "self", "username": "carol", "groups": []}).json()
    carol = lisa.client(created["token"])
    assert carol.delete(f"/api/tokens/{created['id']}").status_code == 204
    assert carol.get("/v1/models").status_code == 401
    shown = admin.get(f"/api/tokens/{created['id']}").json()
    assert shown["active"] is False and shown["revoked_at"] is not None
    assert admin.delete("/api/tokens/tok_doesnotexist").status_code == 404


def test_token_list_paging(admin: httpx.Client) -> None:
    for i in range(3):
        admin.post("/api/tokens", json={"name": f"page-{i}"})
    first = admin.get("/api/tokens", params={"limit": 2}).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    second = admin.get("/api/tokens", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert not {t["id"] for t in first["data"]} & {t["id"] for t in second["data"]}

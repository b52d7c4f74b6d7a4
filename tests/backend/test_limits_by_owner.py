"""Limits come from the owner's groups, however far a token narrows them for access."""

from __future__ import annotations

import httpx

from tests.support import LisaServer, Proc

MODEL = "owner-limits-ok"
GROUP = "owner-limited"


def test_a_group_limit_applies_to_a_token_narrowed_to_no_groups(
    admin: httpx.Client, lisa: LisaServer, faulty_upstream: Proc
) -> None:
    admin.delete(f"/api/models/{MODEL}")
    body = {"id": MODEL, "type": "textgen", "hosting": "internal", "base_url": faulty_upstream.url + "/v1",
            "upstream_model": "ok"}  # fmt: skip
    assert admin.post("/api/models", json=body).status_code == 201
    owner = admin.post("/api/tokens", json={"name": "owner", "username": "narrow-user", "groups": [GROUP]}).json()
    limits = {"rpm": 2, "budget_tokens": 1000, "budget_period": "day"}
    assert admin.put(f"/api/limits/group/{GROUP}", json=limits).status_code == 200
    try:
        with lisa.client(owner["token"]) as client:
            narrowed = client.post("/api/tokens", json={"name": "narrowed", "groups": []}).json()
        assert narrowed["groups"] == []
        with lisa.client(narrowed["token"]) as client:
            mine = client.get("/api/limits/me").json()["buckets"]
            got = [(b["key"], b["limits"]["rpm"], b["limits"]["budget_tokens"]) for b in mine]
            assert got == [("user:narrow-user", 2, 1000)]
            chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
            statuses = [client.post("/v1/chat/completions", json=chat).status_code for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
    finally:
        admin.delete(f"/api/limits/group/{GROUP}")
        admin.delete(f"/api/models/{MODEL}")

"""The database is the one source of truth: a registry change made through one backend process takes effect on
the next request in another process, without a restart."""

from __future__ import annotations

import httpx

from tests.support import LisaServer, Proc

MESSAGES = [{"role": "user", "content": "hi"}]


def faulty_ok(model_id: str, upstream: Proc) -> dict[str, str]:
    """A model served by the test upstream's well-behaved mode."""
    return {
        "id": model_id,
        "type": "textgen",
        "hosting": "internal",
        "base_url": upstream.url + "/v1",
        "upstream_model": "ok",
    }


def test_registry_change_reaches_the_other_process(
    admin: httpx.Client, lisa_peer: LisaServer, faulty_upstream: Proc
) -> None:
    peer = lisa_peer.client()
    admin.delete("/api/models/hot")
    body = {"model": "hot", "messages": MESSAGES}
    assert peer.post("/v1/chat/completions", json=body).status_code == 404  # the peer has loaded its table

    created = admin.post("/api/models", json=faulty_ok("hot", faulty_upstream))
    assert created.status_code == 201
    resp = peer.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "hello world"
    assert "hot" in {m["id"] for m in peer.get("/v1/models").json()["data"]}

    # Re-point it at an upstream that answers 500: the peer follows.
    assert admin.patch("/api/models/hot", json={"upstream_model": "error-500"}).status_code == 200
    assert peer.post("/v1/chat/completions", json=body).status_code == 502

    # Restrict it to a group the caller lacks: invisible at once.
    user = admin.post("/api/tokens", json={"name": "hr", "username": "hr-user", "groups": ["staff"]}).json()
    peer_user = lisa_peer.client(user["token"])
    assert admin.patch("/api/models/hot", json={"upstream_model": "ok"}).status_code == 200
    assert peer_user.post("/v1/chat/completions", json=body).status_code == 200
    assert admin.patch("/api/models/hot", json={"allowed_groups": ["finance"]}).status_code == 200
    assert peer_user.post("/v1/chat/completions", json=body).status_code == 404

    # Deleted: gone everywhere.
    assert admin.delete("/api/models/hot").status_code == 204
    assert peer.post("/v1/chat/completions", json=body).status_code == 404
    assert "hot" not in {m["id"] for m in peer.get("/v1/models").json()["data"]}


def test_writes_through_the_peer_reach_the_first_process(
    admin: httpx.Client, lisa_peer: LisaServer, faulty_upstream: Proc
) -> None:
    peer = lisa_peer.client()
    peer.delete("/api/models/hot2")
    assert admin.post("/v1/chat/completions", json={"model": "hot2", "messages": MESSAGES}).status_code == 404
    created = peer.post("/api/models", json=faulty_ok("hot2", faulty_upstream))
    assert created.status_code == 201
    assert admin.post("/v1/chat/completions", json={"model": "hot2", "messages": MESSAGES}).status_code == 200

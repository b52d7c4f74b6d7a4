"""The database is the one source of truth: a registry change made through one backend process takes effect in
another process without a restart, as soon as the change notice (LISTEN/NOTIFY) reaches it — milliseconds when the
machine is idle; the checks allow 10 s, since on a loaded machine the next request can overtake the notice."""

from __future__ import annotations

import httpx

from tests.support import LisaServer, Proc, wait_for

MESSAGES = [{"role": "user", "content": "hi"}]
NOTICE_S = 10


def answers(client: httpx.Client, model: str, status: int) -> httpx.Response:
    """The first answer to a chat request for ``model`` with ``status``, once the change notice has arrived."""

    def attempt() -> httpx.Response | None:
        resp = client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES})
        return resp if resp.status_code == status else None

    return wait_for(f"{model} answers {status}", attempt, NOTICE_S, pause=0.05)


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
    answers(peer, "hot", 404)  # the peer has loaded its table

    created = admin.post("/api/models", json=faulty_ok("hot", faulty_upstream))
    assert created.status_code == 201
    resp = answers(peer, "hot", 200)
    assert resp.json()["choices"][0]["message"]["content"] == "hello world"
    assert "hot" in {m["id"] for m in peer.get("/v1/models").json()["data"]}

    # Re-point it at an upstream that answers 500: the peer follows.
    assert admin.patch("/api/models/hot", json={"upstream_model": "error-500"}).status_code == 200
    answers(peer, "hot", 502)

    # Restrict it to a group the caller lacks: invisible.
    user = admin.post("/api/tokens", json={"name": "hr", "username": "hr-user", "groups": ["staff"]}).json()
    peer_user = lisa_peer.client(user["token"])
    assert admin.patch("/api/models/hot", json={"upstream_model": "ok"}).status_code == 200
    answers(peer_user, "hot", 200)
    assert admin.patch("/api/models/hot", json={"allowed_groups": ["finance"]}).status_code == 200
    answers(peer_user, "hot", 404)

    # Deleted: gone everywhere.
    assert admin.delete("/api/models/hot").status_code == 204
    answers(peer, "hot", 404)
    assert "hot" not in {m["id"] for m in peer.get("/v1/models").json()["data"]}


def test_writes_through_the_peer_reach_the_first_process(
    admin: httpx.Client, lisa_peer: LisaServer, faulty_upstream: Proc
) -> None:
    peer = lisa_peer.client()
    peer.delete("/api/models/hot2")
    answers(admin, "hot2", 404)
    created = peer.post("/api/models", json=faulty_ok("hot2", faulty_upstream))
    assert created.status_code == 201
    answers(admin, "hot2", 200)

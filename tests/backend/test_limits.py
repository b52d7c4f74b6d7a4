"""Limits hold under concurrency, across two backend processes sharing one database."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import httpx
import pytest

from tests.support import LisaServer, Proc

MESSAGE = [{"role": "user", "content": "hi there"}]  # the faulty upstream counts 2 prompt + 2 completion tokens


@pytest.fixture(scope="module")
def limited_model(admin: httpx.Client, faulty_upstream: Proc) -> str:
    for model_id, behaviour in (("limited-ok", "ok"), ("limited-slow", "slow")):
        admin.delete(f"/api/models/{model_id}")
        body = {"id": model_id, "type": "textgen", "hosting": "internal", "base_url": faulty_upstream.url + "/v1",
                "upstream_model": behaviour}  # fmt: skip
        assert admin.post("/api/models", json=body).status_code == 201
    return "limited-ok"


def new_user(admin: httpx.Client, name: str, groups: list[str] | None = None) -> dict:
    resp = admin.post("/api/tokens", json={"name": name, "username": name, "groups": groups or []})
    assert resp.status_code == 201
    return dict(resp.json())


async def burst(servers: list[LisaServer], token: str, model: str, n: int, **extra: object) -> list[httpx.Response]:
    """``n`` requests at once, alternating between the backend processes."""
    clients = [
        httpx.AsyncClient(base_url=s.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) for s in servers
    ]
    try:
        body = {"model": model, "messages": MESSAGE, **extra}
        cycle = itertools.cycle(clients)
        return list(await asyncio.gather(*(next(cycle).post("/v1/chat/completions", json=body) for _ in range(n))))
    finally:
        for client in clients:
            await client.aclose()


def test_limits_api_validation_and_audit(admin: httpx.Client) -> None:
    assert admin.put("/api/limits/user/val", json={}).status_code == 422
    assert admin.put("/api/limits/user/val", json={"budget_tokens": 10}).status_code == 422
    assert admin.put("/api/limits/planet/val", json={"rpm": 1}).status_code == 422
    assert admin.put("/api/limits/user/val", json={"rpm": 0}).status_code == 422
    set_ = admin.put("/api/limits/user/val", json={"rpm": 5, "budget_tokens": 100, "budget_period": "day"})
    assert set_.status_code == 200 and set_.json()["rpm"] == 5
    assert admin.put("/api/limits/user/val", json={"tpm": 7}).json()["rpm"] is None  # replaced, not merged
    assert {"user:val"} <= {f"{d['scope']}:{d['subject']}" for d in admin.get("/api/limits").json()["data"]}
    assert admin.delete("/api/limits/user/val").status_code == 204
    assert admin.delete("/api/limits/user/val").status_code == 404
    actions = [e["action"] for e in admin.get("/api/audit", params={"resource_id": "user:val"}).json()["data"]]
    assert actions == ["limit.delete", "limit.set", "limit.set"]


def test_rpm_limit_of_10_serves_exactly_10_across_two_processes(
    admin: httpx.Client, lisa: LisaServer, lisa_peer: LisaServer, limited_model: str
) -> None:
    user = new_user(admin, "rpm-user")
    assert admin.put("/api/limits/user/rpm-user", json={"rpm": 10}).status_code == 200
    responses = asyncio.run(burst([lisa, lisa_peer], user["token"], limited_model, 30, max_tokens=2))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 10, 429: 20}, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "10 requests per minute" in refused.json()["error"]["message"]
    mine = httpx.get(lisa.url + "/api/limits/me", headers={"Authorization": f"Bearer {user['token']}"}).json()
    assert mine["buckets"][0]["key"] == "user:rpm-user" and mine["buckets"][0]["requests_last_minute"] == 10


def test_token_budget_is_never_exceeded(
    admin: httpx.Client, lisa: LisaServer, lisa_peer: LisaServer, limited_model: str
) -> None:
    user = new_user(admin, "budget-user", ["budgeted"])
    # A group limit applies to each member without a limit of their own.
    assert (
        admin.put("/api/limits/group/budgeted", json={"budget_tokens": 20, "budget_period": "day"}).status_code == 200
    )
    # Each request holds its prompt estimate (2 tokens of text + 6 of chat framing) + max_tokens until it settles
    # at the real 4: concurrent requests share the 20 without overdrawing it.
    responses = asyncio.run(burst([lisa, lisa_peer], user["token"], limited_model, 50, max_tokens=2))
    served = [r for r in responses if r.status_code == 200]
    assert served and all(r.status_code in (200, 429) for r in responses), Counter(r.status_code for r in responses)
    spent = sum(r.json()["usage"]["total_tokens"] for r in served)
    for _ in range(5):  # the rest, one at a time, until even the prompt no longer fits
        time.sleep(0.2)
        later = asyncio.run(burst([lisa_peer], user["token"], limited_model, 1, max_tokens=2))[0]
        if later.status_code == 429:
            break
        spent += later.json()["usage"]["total_tokens"]
    assert later.status_code == 429 and "budget" in later.json()["error"]["message"]
    assert 8 <= spent <= 20
    assert int(later.headers["retry-after"]) <= 24 * 3600
    mine = httpx.get(lisa.url + "/api/limits/me", headers={"Authorization": f"Bearer {user['token']}"}).json()
    assert mine["buckets"][0]["budget_used"] == spent


def test_parallel_limit_and_token_scope(admin: httpx.Client, lisa_peer: LisaServer, limited_model: str) -> None:
    user = new_user(admin, "parallel-user")
    # The peer's upstream timeout is 2 s, so "slow" requests hold their slot for 2 s and end in 504.
    assert admin.put(f"/api/limits/token/{user['id']}", json={"parallel": 2}).status_code == 200
    responses = asyncio.run(burst([lisa_peer], user["token"], "limited-slow", 5))
    assert Counter(r.status_code for r in responses) == {504: 2, 429: 3}
    # Slots are freed when requests end: the next one is admitted.
    again = asyncio.run(burst([lisa_peer], user["token"], limited_model, 1))[0]
    assert again.status_code == 200
    # Another token of the same user is not limited by this token's limit.
    other = admin.post("/api/tokens", json={"name": "second", "username": "parallel-user", "groups": []}).json()
    assert Counter(r.status_code for r in asyncio.run(burst([lisa_peer], other["token"], "limited-slow", 3))) == {
        504: 3
    }


def test_tpm_limit(admin: httpx.Client, lisa: LisaServer, limited_model: str) -> None:
    user = new_user(admin, "tpm-user")
    # Each request needs its prompt estimate (8) + 1 token free in the minute, and costs 4 once settled.
    assert admin.put("/api/limits/user/tpm-user", json={"tpm": 20}).status_code == 200
    statuses = []
    for _ in range(5):
        statuses.append(asyncio.run(burst([lisa], user["token"], limited_model, 1, max_tokens=2))[0].status_code)
        time.sleep(0.2)  # settled before the next one looks
    assert statuses == [200, 200, 200, 429, 429]

"""Budgets hold against requests that name no max_tokens, ask for n choices, or are cut off mid-stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers.faulty_upstream import LONG_TOKENS
from tests.support import LisaServer, Proc

STORY = [{"role": "user", "content": "write a long story"}]  # the upstream counts 4 prompt tokens
MODELS = {"internal": "cap-long", "third_party": "cap-long-tp"}


@pytest.fixture(scope="module")
def long_models(admin: httpx.Client, faulty_upstream: Proc) -> None:
    faulty = faulty_upstream.url + "/v1"
    bodies: list[dict[str, Any]] = [
        {"id": "cap-long", "hosting": "internal", "base_url": faulty, "upstream_model": "long"},
        {"id": "cap-long-tp", "hosting": "third_party", "provider_model": "openai/long", "base_url": faulty,
         "api_key": "unused"},
    ]  # fmt: skip
    for body in bodies:
        admin.delete(f"/api/models/{body['id']}")
        assert admin.post("/api/models", json={"type": "textgen", **body}).status_code == 201


def budgeted_user(admin: httpx.Client, lisa: LisaServer, name: str, budget: int) -> httpx.Client:
    token = admin.post("/api/tokens", json={"name": name, "username": name, "groups": []}).json()["token"]
    resp = admin.put(f"/api/limits/user/{name}", json={"budget_tokens": budget, "budget_period": "day"})
    assert resp.status_code == 200
    return lisa.client(token, timeout=60)


def budget_used(client: httpx.Client) -> int:
    used: int = client.get("/api/limits/me").json()["buckets"][0]["budget_used"]
    return used


@pytest.fixture
def clients() -> Iterator[list[httpx.Client]]:
    made: list[httpx.Client] = []
    yield made
    for client in made:
        client.close()


@pytest.mark.parametrize("hosting", ["internal", "third_party"])
def test_a_budget_is_never_exceeded_by_requests_without_max_tokens(
    admin: httpx.Client, lisa: LisaServer, long_models: None, clients: list[httpx.Client], hosting: str
) -> None:
    user = budgeted_user(admin, lisa, f"cap-seq-{hosting}", 300)
    clients.append(user)
    spent, answers = 0, 0
    for _ in range(10):
        resp = user.post("/v1/chat/completions", json={"model": MODELS[hosting], "messages": STORY})
        if resp.status_code == 429:
            break
        assert resp.status_code == 200, resp.text
        answers += 1
        spent += resp.json()["usage"]["total_tokens"]
        assert resp.json()["choices"][0]["finish_reason"] == "length"  # capped, where the model would go on
        time.sleep(0.2)  # let the request settle before the next one looks at the budget
    assert answers >= 1 and spent <= 300, (answers, spent)
    assert spent >= 280  # the budget is usable to its end, less about one prompt
    assert resp.status_code == 429 and "budget" in resp.json()["error"]["message"]
    assert 1 <= int(resp.headers["retry-after"]) <= 24 * 3600
    assert budget_used(user) == spent


def test_concurrent_requests_share_a_budget_without_overdrawing_it(
    admin: httpx.Client, lisa: LisaServer, long_models: None, clients: list[httpx.Client]
) -> None:
    user = budgeted_user(admin, lisa, "cap-burst", 600)
    clients.append(user)
    token = user.headers["Authorization"]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=lisa.url, headers={"Authorization": token}, timeout=60) as client:
            body = {"model": "cap-long", "messages": STORY}
            return list(await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(8))))

    responses = asyncio.run(burst())
    served = [r for r in responses if r.status_code == 200]
    assert served and all(r.status_code in (200, 429) for r in responses)
    spent = sum(r.json()["usage"]["total_tokens"] for r in served)
    assert spent <= 600
    time.sleep(0.3)
    assert budget_used(user) == spent


@pytest.mark.parametrize("hosting", ["internal", "third_party"])
def test_n_choices_are_counted(
    admin: httpx.Client, lisa: LisaServer, long_models: None, clients: list[httpx.Client], hosting: str
) -> None:
    user = budgeted_user(admin, lisa, f"cap-n-{hosting}", 400)
    clients.append(user)
    resp = user.post("/v1/chat/completions", json={"model": MODELS[hosting], "messages": STORY, "n": 3})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["choices"]) == 3
    assert body["usage"]["total_tokens"] <= 400
    per_choice = [len(c["message"]["content"].split()) for c in body["choices"]]
    assert max(per_choice) <= 400 // 3 < LONG_TOKENS


def test_nothing_left_even_for_the_prompt_is_429_without_an_upstream_call(
    admin: httpx.Client, lisa: LisaServer, long_models: None, clients: list[httpx.Client]
) -> None:
    user = budgeted_user(admin, lisa, "cap-prompt", 50)
    clients.append(user)
    big = [{"role": "user", "content": "word " * 100}]  # about 125 tokens of prompt: more than the whole budget
    resp = user.post("/v1/chat/completions", json={"model": "cap-long", "messages": big, "max_tokens": 1})
    assert resp.status_code == 429, resp.text
    assert "budget" in resp.json()["error"]["message"] and int(resp.headers["retry-after"]) >= 1
    time.sleep(0.3)
    assert user.get("/api/usage/me").json()["rows"] == []  # the upstream never saw it
    assert budget_used(user) == 0


@pytest.mark.parametrize("hosting", ["internal", "third_party"])
def test_a_client_that_leaves_mid_stream_is_charged_what_it_received(
    admin: httpx.Client, lisa: LisaServer, long_models: None, clients: list[httpx.Client], hosting: str
) -> None:
    user = budgeted_user(admin, lisa, f"cap-gone-{hosting}", 100_000)
    clients.append(user)
    received = 0
    body = {"model": MODELS[hosting], "messages": STORY, "stream": True}
    with user.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            received += line.count('"content":" tok')
            if received >= 30:
                break  # and hang up: the upstream would have gone on for about ten seconds
    deadline = time.monotonic() + 4
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not rows:
        time.sleep(0.2)
        rows = [r for r in user.get("/api/usage/me").json()["rows"] if r["model"] == MODELS[hosting]]
    assert rows, "the cut-off request was never metered"
    charged = rows[0]["completion_tokens"]
    assert received <= charged <= received + 200, (received, charged)  # about two seconds of slack, of ten
    assert 0 < budget_used(user) <= rows[0]["prompt_tokens"] + charged

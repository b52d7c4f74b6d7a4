"""Every /v1 request is metered (off the request path) and aggregated by /api/usage per model and per user."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from tests.support import LisaServer


def _wait_for(predicate: Callable[[], list[dict]], timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_usage_per_model_and_user(admin: httpx.Client, lisa: LisaServer) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    user = admin.post("/api/tokens", json={"name": "meter", "username": "meter-user", "groups": []}).json()
    client = lisa.client(user["token"])
    chat = {"model": "gemma3-270m", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 3}
    for _ in range(2):
        assert client.post("/v1/chat/completions", json=chat).status_code == 200
    with client.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as resp:
        assert resp.status_code == 200
        resp.read()
    assert client.post("/v1/embeddings", json={"model": "minilm-l6-v2", "input": ["a b c", "d e"]}).status_code == 200
    assert client.post("/v1/embeddings", json={"model": "gemma3-270m", "input": "x"}).status_code == 400  # not metered

    def report(group_by: str) -> dict:
        params = {
            "start": start.isoformat(),
            "end": (datetime.now(UTC) + timedelta(seconds=5)).isoformat(),
            "group_by": group_by,
        }
        resp = admin.get("/api/usage", params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def meter_rows() -> list[dict]:
        rows = [r for r in report("model,user")["rows"] if r["username"] == "meter-user"]
        return rows if sum(r["requests"] for r in rows) >= 4 else []

    rows = {r["model"]: r for r in _wait_for(meter_rows)}
    chat_row, emb_row = rows["gemma3-270m"], rows["minilm-l6-v2"]
    assert chat_row["requests"] == 3 and chat_row["errors"] == 0
    assert chat_row["completion_tokens"] >= 6 and chat_row["prompt_tokens"] > 0
    assert chat_row["total_tokens"] == chat_row["prompt_tokens"] + chat_row["completion_tokens"]
    assert chat_row["avg_latency_ms"] > 0
    assert emb_row["requests"] == 1 and emb_row["prompt_tokens"] > 0 and emb_row["completion_tokens"] == 0
    per_user = {r["username"]: r for r in report("user")["rows"]}
    assert per_user["meter-user"]["requests"] == 4
    per_model = {r["model"] for r in report("model")["rows"]}
    assert {"gemma3-270m", "minilm-l6-v2"} <= per_model
    # The user sees their own usage, and only theirs.
    own = client.get("/api/usage/me", params={"start": start.isoformat()}).json()["rows"]
    assert {r["model"]: r["requests"] for r in own} == {"gemma3-270m": 3, "minilm-l6-v2": 1}


def test_usage_validation_and_access(admin: httpx.Client, lisa: LisaServer) -> None:
    now = datetime.now(UTC)
    resp = admin.get("/api/usage", params={"start": now.isoformat(), "end": (now - timedelta(hours=1)).isoformat()})
    assert resp.status_code == 400 and "before" in resp.json()["detail"]
    assert admin.get("/api/usage", params={"group_by": "colour"}).status_code == 422
    assert admin.get("/api/usage", params={"start": "yesterday-ish"}).status_code == 422
    user = admin.post("/api/tokens", json={"name": "u", "username": "nosy", "groups": []}).json()
    assert lisa.client(user["token"]).get("/api/usage").status_code == 403
    with httpx.Client(base_url=lisa.url) as anon:
        assert anon.get("/api/usage").status_code == 401

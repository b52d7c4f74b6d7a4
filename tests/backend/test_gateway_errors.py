"""Every bad input and upstream failure gets its documented status and an OpenAI-shaped error with the reason."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from backend.db.changes import CHANNEL
from backend.db.engine import asyncpg_dsn
from tests.support import LisaServer, Proc, free_port, start_module

CHAT = "gemma3-270m"
MESSAGES = [{"role": "user", "content": "hi"}]


def assert_openai_error(resp: httpx.Response, status: int, *fragments: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["message"], str) and error["type"]
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return error


def register(admin: httpx.Client, model_id: str, base_url: str, **extra: object) -> None:
    admin.delete(f"/api/models/{model_id}")
    body = {"id": model_id, "type": "textgen", "hosting": "internal", "base_url": base_url, **extra}
    resp = admin.post("/api/models", json=body)
    assert resp.status_code == 201, resp.text


@pytest.fixture(scope="module")
def faulty_models(admin: httpx.Client, faulty_upstream: Proc) -> None:
    for behaviour in ("ok", "slow", "stall-mid-stream", "error-500", "bad-request"):
        register(admin, f"faulty-{behaviour}", faulty_upstream.url + "/v1", upstream_model=behaviour)


def test_malformed_json_is_400(admin: httpx.Client) -> None:
    resp = admin.post(
        "/v1/chat/completions", content=b'{"model": "x", "messages": [', headers={"content-type": "application/json"}
    )
    assert_openai_error(resp, 400, "not valid JSON")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"[1, 2]", "JSON object"),
        (orjson.dumps({"messages": MESSAGES}), "'model' is required"),
        (orjson.dumps({"model": 7, "messages": MESSAGES}), "'model' is required"),
        (orjson.dumps({"model": CHAT}), "Missing required parameter: 'messages'"),
    ],
)
def test_bad_bodies_are_400(admin: httpx.Client, body: bytes, fragment: str) -> None:
    assert_openai_error(admin.post("/v1/chat/completions", content=body), 400, fragment)


def test_unknown_model_is_404(admin: httpx.Client) -> None:
    resp = admin.post("/v1/chat/completions", json={"model": "nope", "messages": MESSAGES})
    assert_openai_error(resp, 404, "nope")
    assert_openai_error(admin.get("/v1/models/nope"), 404, "nope")


def test_wrong_model_type_endpoint_and_method(admin: httpx.Client) -> None:
    assert_openai_error(admin.post("/v1/embeddings", json={"model": CHAT, "input": "x"}), 400, "textgen")
    assert_openai_error(admin.post("/v1/nonsense", json={}), 404, "unknown endpoint")
    assert_openai_error(admin.get("/v1/chat/completions"), 405, "POST")


def test_oversized_body_is_413(admin: httpx.Client) -> None:
    big = b'{"model": "gemma3-270m", "messages": [{"role": "user", "content": "' + b"a" * (17 * 1024 * 1024) + b'"}]}'
    assert_openai_error(admin.post("/v1/chat/completions", content=big), 413, "limit")


def test_credentials(lisa: LisaServer) -> None:
    with httpx.Client(base_url=lisa.url, timeout=30) as anon:
        assert_openai_error(anon.get("/v1/models"), 401, "missing credentials")
        assert anon.get("/v1/models", headers={"Api-Key": lisa.token}).status_code == 200
        assert_openai_error(anon.get("/v1/models", headers={"Authorization": "Basic abc"}), 401, "Bearer")
        assert_openai_error(anon.get("/v1/models", headers={"Authorization": "Bearer lisa_bogus"}), 401, "invalid")
        assert anon.get("/api/models").status_code == 401
        assert anon.get("/health").status_code == 200


def test_expired_and_revoked_tokens_are_401_in_every_process(
    admin: httpx.Client, lisa: LisaServer, lisa_peer: LisaServer
) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    expiring = admin.post("/api/tokens", json={"name": "short", "expires_at": soon}).json()
    revocable = admin.post("/api/tokens", json={"name": "revocable"}).json()
    for server in (lisa, lisa_peer):
        for token in (expiring, revocable):
            assert server.client(token["token"]).get("/v1/models").status_code == 200
    assert admin.delete(f"/api/tokens/{revocable['id']}").status_code == 204
    for server in (lisa, lisa_peer):  # the peer cached it as valid a moment ago
        assert_openai_error(server.client(revocable["token"]).get("/v1/models"), 401, "revoked")
        assert server.client(revocable["token"]).get("/api/models").status_code == 401
    time.sleep(2.2)
    for server in (lisa, lisa_peer):
        assert_openai_error(server.client(expiring["token"]).get("/v1/models"), 401, "expired")


async def set_status_as_the_lifecycle_does(database_url: str, model_id: str, status: str) -> None:
    """Requests cannot set a model's status (the lifecycle owns it): the test writes it as the lifecycle does."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with conn.transaction():
            await conn.execute("UPDATE models SET status = $2 WHERE id = $1", model_id, status)
            await conn.execute(f"SELECT pg_notify('{CHANNEL}', 'models')")
    finally:
        await conn.close()


def test_streaming_refused_for_non_streaming_model_and_not_in_service(lisa: LisaServer, admin: httpx.Client) -> None:
    register(admin, "no-stream", "http://127.0.0.1:9/v1", streaming=False)
    resp = admin.post("/v1/chat/completions", json={"model": "no-stream", "messages": MESSAGES, "stream": True})
    assert_openai_error(resp, 400, "streaming")
    asyncio.run(set_status_as_the_lifecycle_does(lisa.database_url, "no-stream", "Stopped"))
    deadline = time.monotonic() + 10  # until the change feed's notification reaches the server's route table
    while (
        resp := admin.post("/v1/chat/completions", json={"model": "no-stream", "messages": MESSAGES})
    ).status_code != 503:
        assert time.monotonic() < deadline, resp.text
        time.sleep(0.1)
    assert_openai_error(resp, 503, "Stopped")


async def set_statuses_as_the_lifecycle_does(database_url: str, statuses: dict[str, str]) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with conn.transaction():
            for model_id, status in statuses.items():
                await conn.execute("UPDATE models SET status = $2 WHERE id = $1", model_id, status)
            await conn.execute(f"SELECT pg_notify('{CHANNEL}', 'models')")
    finally:
        await conn.close()


MID_WORKFLOW = ("Creating", "Starting", "Stopping", "Stopped", "Deleting", "Failed")


def test_models_mid_workflow_are_neither_listed_nor_routed(
    lisa: LisaServer, admin: httpx.Client, faulty_upstream: Proc
) -> None:
    """Only InService and Updating models (whose deployment serves until the update ends) are listed and routed."""
    statuses = {f"wf-{status.lower()}": status for status in (*MID_WORKFLOW, "Updating", "InService")}
    for model_id in statuses:
        register(admin, model_id, faulty_upstream.url + "/v1", upstream_model="ok")
    asyncio.run(set_statuses_as_the_lifecycle_does(lisa.database_url, statuses))
    deadline = time.monotonic() + 10  # until the change feed's notification reaches the server's route table
    while "wf-stopped" in (listed := {m["id"] for m in admin.get("/v1/models").json()["data"]}):
        assert time.monotonic() < deadline, listed
        time.sleep(0.1)
    assert {"wf-updating", "wf-inservice"} <= listed
    assert not listed & {f"wf-{status.lower()}" for status in MID_WORKFLOW}, listed
    for status in MID_WORKFLOW:
        model_id = f"wf-{status.lower()}"
        for stream in (False, True):
            body = {"model": model_id, "messages": MESSAGES, "stream": stream}
            resp = admin.post("/v1/chat/completions", json=body)
            error = assert_openai_error(resp, 503, model_id, f"status: {status}")
            assert error["type"] == "service_unavailable"
        assert_openai_error(admin.get(f"/v1/models/{model_id}"), 503, f"status: {status}")
    for model_id in ("wf-updating", "wf-inservice"):
        assert admin.get(f"/v1/models/{model_id}").json()["id"] == model_id
        answer = admin.post("/v1/chat/completions", json={"model": model_id, "messages": MESSAGES})
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "hello world"
    for model_id in statuses:  # the rules let an admin delete only InService, Stopped and Failed models
        asyncio.run(set_statuses_as_the_lifecycle_does(lisa.database_url, {model_id: "Stopped"}))
        assert admin.delete(f"/api/models/{model_id}").status_code == 204


def test_upstream_down_is_502(admin: httpx.Client) -> None:
    register(admin, "down", f"http://127.0.0.1:{free_port()}/v1")
    resp = admin.post("/v1/chat/completions", json={"model": "down", "messages": MESSAGES})
    assert_openai_error(resp, 502, "unreachable")
    resp = admin.post("/v1/chat/completions", json={"model": "down", "messages": MESSAGES, "stream": True})
    assert_openai_error(resp, 502, "unreachable")


def test_upstream_errors(admin: httpx.Client, faulty_models: None) -> None:
    ok = admin.post("/v1/chat/completions", json={"model": "faulty-ok", "messages": MESSAGES})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "hello world"
    assert_openai_error(
        admin.post("/v1/chat/completions", json={"model": "faulty-error-500", "messages": MESSAGES}), 502, "500"
    )
    # An upstream 4xx is the client's fault: its status and message pass through.
    resp = admin.post("/v1/chat/completions", json={"model": "faulty-bad-request", "messages": MESSAGES})
    assert resp.status_code == 400 and "error" in resp.json()


def test_upstream_timeout_is_504(lisa_peer: LisaServer, faulty_models: None) -> None:
    started = time.monotonic()
    resp = lisa_peer.client().post("/v1/chat/completions", json={"model": "faulty-slow", "messages": MESSAGES})
    assert_openai_error(resp, 504, "2s")
    assert time.monotonic() - started < 10


def sse_events(resp: httpx.Response) -> list[bytes]:
    return [line[len("data: ") :].encode() for line in resp.iter_lines() if line.startswith("data: ")]


def test_stalled_stream_ends_with_an_error_event(lisa_peer: LisaServer, faulty_models: None) -> None:
    body = {"model": "faulty-stall-mid-stream", "messages": MESSAGES, "stream": True}
    with lisa_peer.client(timeout=15).stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        events = sse_events(resp)
    contents = [orjson.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert "hello" in contents
    error = orjson.loads(events[-1])["error"]
    assert error["code"] == 504 and "stalled" in error["message"]


@pytest.fixture
def doomed_upstream(tmp_path: Path) -> Iterator[Proc]:
    proc = start_module("tests.servers.faulty_upstream", tmp_path)
    yield proc
    proc.stop(signal.SIGKILL)


def test_upstream_killed_mid_stream_ends_with_error_event(admin: httpx.Client, doomed_upstream: Proc) -> None:
    register(admin, "doomed", doomed_upstream.url + "/v1", upstream_model="die-mid-stream")
    started = time.monotonic()
    body = {"model": "doomed", "messages": MESSAGES, "stream": True}
    with admin.stream("POST", "/v1/chat/completions", json=body, timeout=30) as resp:
        assert resp.status_code == 200
        events = sse_events(resp)
    assert time.monotonic() - started < 10  # never a hang
    assert doomed_upstream.popen.wait(5) == 1  # the upstream really died
    assert b"[DONE]" not in events
    error = orjson.loads(events[-1])["error"]
    assert error["code"] == 502 and "mid-stream" in error["message"]
    contents = [orjson.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert "hello" in contents

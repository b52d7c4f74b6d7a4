"""The chat endpoint's raw-ASGI fast path (backend/api/chat_asgi.py) refuses and answers exactly as the FastAPI route
did, through the running server: every refusal keeps its status, headers and ``detail``, and leaves nothing behind.
(The expected answers here were taken from the FastAPI route before the fast path existed.)"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backend.api.chat_asgi import ChatFastPath
from backend.api.request_guard import RequestGuard
from backend.api.routes import chat
from backend.config import Settings
from backend.main import create_api
from tests.backend.browser import signed_in
from tests.backend.chat.helpers import new_session, new_user, parse_sse
from tests.support import LisaServer, Proc


@pytest.fixture(scope="module")
def model(admin: httpx.Client, faulty_upstream: Proc) -> Iterator[str]:
    name = f"fast-ok-{secrets.token_hex(3)}"
    body = {"id": name, "type": "textgen", "hosting": "internal", "base_url": faulty_upstream.url + "/v1",
            "upstream_model": "ok"}  # fmt: skip
    assert admin.post("/api/models", json=body).status_code == 201
    yield name
    admin.delete(f"/api/models/{name}")


@pytest.fixture
def user(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    with new_user(admin, lisa, "fast") as client:
        yield client


def post(client: httpx.Client, session_id: str, content: bytes | Iterator[bytes] | None = None,
         **kwargs: Any) -> httpx.Response:  # fmt: skip
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return client.post(f"/api/sessions/{session_id}/messages", content=content, headers=headers, **kwargs)


def nothing_saved(client: httpx.Client, session_id: str) -> bool:
    return client.get(f"/api/sessions/{session_id}").json()["messages"] == []


def test_the_app_answers_the_chat_route_by_its_fast_path() -> None:
    """The guard's table gives the chat route its raw-ASGI handler (and no other route one)."""
    app = create_api(Settings(), "postgresql://unused@127.0.0.1:1/unused")  # the table only; nothing starts
    middleware = next(m for m in app.user_middleware if m.cls is RequestGuard)
    guard = RequestGuard(app, **middleware.kwargs)  # type: ignore[arg-type]
    found = guard.table.find({"type": "http", "method": "POST", "path": "/api/sessions/ses_x/messages"})
    assert isinstance(found.fast, ChatFastPath) and found.principal and found.json_body
    assert found.fast.route.endpoint is chat.send_message
    others = [("GET", "/api/sessions/ses_x"), ("POST", "/api/sessions"), ("POST", "/api/sessions/s/tool-calls/c")]
    for method, path in others:
        assert guard.table.find({"type": "http", "method": method, "path": path}).fast is None


def test_a_turn_streams_with_the_routes_headers(user: httpx.Client, model: str) -> None:
    sid = new_session(user, model=model)["id"]
    with user.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "hello"}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert resp.headers["cache-control"] == "no-cache" and resp.headers["x-accel-buffering"] == "no"
        assert "content-length" not in resp.headers and "set-cookie" not in resp.headers
        events = list(parse_sse(resp.iter_lines()))
    names = [e.name for e in events]
    assert names[:2] == ["user_message", "assistant_message"] and names[-2:] == ["usage", "done"]
    assert events[-1].data["status"] == "complete"
    assert [m["role"] for m in user.get(f"/api/sessions/{sid}").json()["messages"]] == ["user", "assistant"]


def test_no_credentials_is_401_unread(lisa: LisaServer, user: httpx.Client, model: str) -> None:
    sid = new_session(user, model=model)["id"]
    with httpx.Client(base_url=lisa.url, timeout=30) as anonymous:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            resp = post(anonymous, sid, b'{"content": "x"}', headers=headers)
            assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer", resp.text
            assert resp.json()["detail"]
    assert nothing_saved(user, sid)


def test_size_and_content_type_are_checked_before_the_body(lisa: LisaServer, user: httpx.Client, model: str) -> None:
    sid = new_session(user, model=model)["id"]
    cap = Settings().max_json_bytes
    big = b'{"content": "' + b"x" * cap + b'"}'
    declared = post(user, sid, big)
    assert declared.status_code == 413
    assert declared.json() == {"detail": f"the request body is {len(big)} bytes; the limit for this request is "
                                         f"{cap} bytes"}  # fmt: skip

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"content": "'
        for _ in range(cap // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    streamed = post(user, sid, chunks())
    assert streamed.status_code == 413 and streamed.json() == {"detail": "Content Too Large"}
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        resp = post(user, sid, b'{"content": "x"}', headers={"Content-Type": content_type})
        assert resp.status_code == 415 and content_type in resp.json()["detail"], resp.text
    assert nothing_saved(user, sid)


def test_a_cross_site_turn_with_the_session_cookie_is_403(lisa: LisaServer, model: str) -> None:
    with signed_in(lisa) as web:
        sid = new_session(web, model=model)["id"]
        attack = web.post(f"/api/sessions/{sid}/messages", json={"content": "x"}, headers={"Origin": "https://e.vil"})
        assert attack.status_code == 403 and "cross-site" in attack.json()["detail"]
        assert nothing_saved(web, sid)
        same_site = web.post(f"/api/sessions/{sid}/messages", json={"content": "x"})  # Origin: this site
        assert same_site.status_code == 200 and same_site.text.rstrip().endswith('"status":"complete"}')


def test_another_users_session_is_404(admin: httpx.Client, lisa: LisaServer, user: httpx.Client, model: str) -> None:
    sid = new_session(user, model=model)["id"]
    with new_user(admin, lisa, "fast-other") as other:
        resp = post(other, sid, b'{"content": "mine now"}')
        assert resp.status_code == 404 and resp.json() == {"detail": f"session '{sid}' not found"}
    missing = post(user, "ses_nope", b'{"content": "x"}')
    assert missing.status_code == 404 and missing.json() == {"detail": "session 'ses_nope' not found"}
    assert nothing_saved(user, sid)


BAD_BODIES: list[tuple[bytes, int, str]] = [
    (b"", 422, "body: Field required"),
    (b"{not json", 400, "the request body is not valid JSON"),
    (b'{"content": "\xff\xfe"}', 400, "There was an error parsing the body"),
    (b"[1, 2]", 422, "body: Input should be a valid dictionary or object to extract fields from"),
    (b'"text"', 422, "body: Input should be a valid dictionary or object to extract fields from"),
    (b"{}", 422, "body: send 'content' (a question), or 'parent_id' of a question to regenerate its answer"),
    (b'{"content": ""}', 422, "content: Value should have at least 1 item after validation, not 0"),
    (b'{"content": "x", "bogus": 1}', 422, "bogus: Extra inputs are not permitted"),
    (b'{"content": "x", "history_buffer": -1, "tool_mode": "yolo"}', 422,
     "history_buffer: Input should be greater than or equal to 0; tool_mode: Input should be 'safe' or 'autopilot'"),
    (b'{"content": "a\\u0000b"}', 422, "content: must not contain NUL characters"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "detail"), BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
def test_a_bad_body_gets_the_same_status_and_detail(user: httpx.Client, model: str, body: bytes, status: int,
                                                    detail: str) -> None:  # fmt: skip
    sid = new_session(user, model=model)["id"]
    resp = post(user, sid, body)
    assert (resp.status_code, resp.json()) == (status, {"detail": detail})
    assert nothing_saved(user, sid)


def test_a_nul_in_the_path_or_query_is_422(user: httpx.Client, model: str) -> None:
    sid = new_session(user, model=model)["id"]
    in_path = post(user, "ses%00x", b'{"content": "x"}')
    assert in_path.status_code == 422 and in_path.json()["detail"].startswith("session_id: ")
    in_query = post(user, sid, b'{"content": "x"}', params={"q": "a\x00b"})
    assert in_query.status_code == 422 and in_query.json()["detail"].startswith("q: ")
    first_the_body = post(user, "ses%00x", b"{not json")  # FastAPI reads the body before its dependencies
    assert first_the_body.status_code == 400
    assert nothing_saved(user, sid)

"""The app's backend client against the real backend: typed results, typed stream events, readable errors, and
one user's credential never riding on another's request."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from frontend.client import BackendClient, BackendError, Credential, shared_http, sign_in_with_token, sign_out
from frontend.schemas import ChatArguments
from frontend.sse import AssistantMessage, Delta, Done, Other, UsageReport, UserMessage, parse_events
from tests.frontend.conftest import new_user
from tests.support import LisaServer


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_sse_frames_become_typed_events() -> None:
    frames = [
        ": keep-alive", "event: user_message", 'data: {"id": "msg_1"}', "",
        'data: {"choices": [{"delta": {"content": "Hel"}}]}', "", 'data: {"choices": [{"delta": {}}]}', "",
        "data:{\"choices\": [{\"delta\": {\"content\": \"lo\"}}]}", "",
        "event: tool_call", 'data: {"id": "c1",', 'data: "name": "add"}', "",
        "event: done", 'data: {"assistant_message_id": "msg_2", "status": "complete"}',
    ]  # fmt: skip
    events = [e async for e in parse_events(lines(*frames))]
    assert events == [
        UserMessage("msg_1"), Delta("Hel"), Delta("lo"), Other("tool_call", {"id": "c1", "name": "add"}),
        Done("msg_2", "complete"),
    ]  # fmt: skip


@pytest.fixture
async def http(lisa: LisaServer) -> AsyncIterator[httpx.AsyncClient]:
    async with shared_http(lisa.url) as client:
        yield client


async def test_a_turn_streams_typed_events_as_the_user(
    http: httpx.AsyncClient, lisa: LisaServer, admin: httpx.Client
) -> None:
    user = new_user(admin, lisa, "client")
    client = BackendClient(http, Credential(token=user.token))
    assert (await client.me()).username == user.name
    assert "gemma3-270m" in await client.chat_models()
    session = await client.create_session("typed", "gemma3-270m")
    events = [e async for e in client.chat(session.id, "Hi", arguments=ChatArguments(max_tokens=8))]
    kinds = [type(e) for e in events]
    assert kinds[:2] == [UserMessage, AssistantMessage] and Delta in kinds
    assert isinstance(events[-1], Done) and events[-1].status == "complete"
    usage = next(e for e in events if isinstance(e, UsageReport))
    assert 0 < usage.completion_tokens <= 8
    text = "".join(e.text for e in events if isinstance(e, Delta))
    stored = await client.session(session.id)
    assert [m.role for m in stored.messages] == ["user", "assistant"] and stored.messages[1].content == text
    question = stored.messages[0].id
    again = [e async for e in client.regenerate(session.id, question, arguments=ChatArguments(max_tokens=4))]
    assert isinstance(again[0], UserMessage) and again[0].id == question
    assert isinstance(again[-1], Done)


async def test_backend_errors_carry_the_readable_detail(
    http: httpx.AsyncClient, lisa: LisaServer, admin: httpx.Client
) -> None:
    user = new_user(admin, lisa, "client-err")
    client = BackendClient(http, Credential(token=user.token))
    with pytest.raises(BackendError) as missing:
        await client.session("ses_nope")
    assert missing.value.status == 404 and "not found" in missing.value.detail
    session = await client.create_session("errors")
    with pytest.raises(BackendError) as bad:
        args = ChatArguments(stop=["a", "b", "c", "d", "e"])
        [e async for e in client.chat(session.id, "x", model="gemma3-270m", arguments=args)]
    assert bad.value.status == 422 and bad.value.detail.startswith("arguments.stop:"), bad.value.detail
    with pytest.raises(BackendError) as nobody:
        await BackendClient(http, Credential()).me()
    assert nobody.value.status == 401 and "credentials" in nobody.value.detail


async def test_a_browser_session_works_and_no_cookie_is_kept(
    http: httpx.AsyncClient, lisa: LisaServer, admin: httpx.Client
) -> None:
    user = new_user(admin, lisa, "client-cookie")
    session_id = await sign_in_with_token(http, user.token)
    assert not http.cookies  # the shared pool kept nothing of the sign-in's Set-Cookie
    client = BackendClient(http, Credential(session_id=session_id))
    assert (await client.me()).username == user.name
    created = await client.create_session("via cookie")  # an unsafe request with the session: passes the CSRF check
    assert (await client.rename_session(created.id, "renamed")).title == "renamed"
    # Another caller on the same pool is nobody: no cookie rides along.
    with pytest.raises(BackendError) as anonymous:
        await BackendClient(http, Credential()).me()
    assert anonymous.value.status == 401
    await sign_out(http, session_id)
    with pytest.raises(BackendError) as ended:
        await client.me()
    assert ended.value.status == 401

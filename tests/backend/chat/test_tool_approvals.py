"""Safe-mode approvals of the chat tool loop (backend/chat/tool_approvals.py), on the session server's database:
the wait's time limit, a client that leaves, decisions for calls that are unknown, someone else's or no longer
waiting, a decision taken by another process (its own engine and change feed), and the fallback poll."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
import pytest

from backend.auth.principal import Principal
from backend.chat.tool_approvals import ToolApprovals
from backend.chat.tool_loop import ToolLoop, ToolRound
from backend.db.changes import ChangeFeed
from backend.db.engine import asyncpg_dsn, create_engine
from backend.errors import Conflict, NotFound
from backend.mcp.schemas import ToolRef, ToolResult
from tests.support import LisaServer


class RecordingMcp:
    """Stands for the MCP service inside the process (the loop's own tests run real MCP servers)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def call_tool(self, principal: Principal, server_id: str, tool: str, arguments: dict[str, Any],
                        *, include_personal: bool) -> ToolResult:  # fmt: skip
        self.calls.append(arguments)
        return ToolResult(text="ran", is_error=False)


async def _never(*_: Any) -> bool:
    return False


@pytest.fixture(scope="module")
def owner(admin: httpx.Client, lisa: LisaServer) -> tuple[str, str, str]:
    """A user, and two sessions of theirs: (username, session id, another session id)."""
    name = f"approver-{secrets.token_hex(3)}"
    token = admin.post("/api/tokens", json={"name": name, "username": name, "groups": []}).json()["token"]
    with lisa.client(token) as client:
        ids = [client.post("/api/sessions", json={}).json()["id"] for _ in range(2)]
    return name, ids[0], ids[1]


@asynccontextmanager
async def process(lisa: LisaServer, poll_seconds: float = 1.0, listen: bool = True) -> AsyncIterator[ToolApprovals]:
    """What one backend process holds: an engine, and (``listen``) the change feed that wakes its waits."""
    engine = create_engine(lisa.database_url, 2)
    approvals = ToolApprovals(engine, poll_seconds=poll_seconds)
    feed = ChangeFeed(asyncpg_dsn(lisa.database_url))
    if listen:
        feed.subscribe(approvals.on_change)
        await feed.start()
    try:
        yield approvals
    finally:
        await feed.stop()
        await engine.dispose()


def tool_round(approvals: ToolApprovals, owner: str, session_id: str, timeout: float) -> tuple[ToolRound, RecordingMcp]:
    mcp = RecordingMcp()
    loop = ToolLoop(cast(Any, mcp), _never, approvals, approval_timeout=timeout)
    principal = Principal(username=owner, groups=frozenset(), is_admin=False)
    return ToolRound(loop, principal, session_id, "safe", False, {"srv__echo": ToolRef("srv", "echo")}), mcp


def call(call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "srv__echo", "arguments": '{"text": "x"}'}}


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def test_no_decision_in_time_is_a_denial_and_a_late_one_conflicts(
    lisa: LisaServer, owner: tuple[str, str, str]
) -> None:
    name, session_id, _ = owner

    async def main() -> None:
        async with process(lisa) as approvals:
            rnd, mcp = tool_round(approvals, name, session_id, 0.5)
            events: list[tuple[str, dict[str, Any]]] = []
            call_id = "late-" + secrets.token_hex(3)
            messages = await rnd.run([call(call_id)], "", lambda n, d: events.append((n, d)), asyncio.Event())
            assert messages[-1] == {
                "role": "tool",
                "tool_call_id": call_id,
                "content": "the user denied this tool call",
            }
            assert [n for n, _ in events] == ["tool_approval", "tool_result"] and not mcp.calls
            assert rnd.records[0]["approved"] is False
            with pytest.raises(Conflict, match="no longer waiting"):
                await approvals.decide(name, session_id, call_id, True)
            with pytest.raises(NotFound):  # someone else, or another session: as if it did not exist
                await approvals.decide("bob", session_id, call_id, True)

    run(main)


def test_a_decision_in_another_process_wakes_the_wait(lisa: LisaServer, owner: tuple[str, str, str]) -> None:
    name, session_id, other_session = owner

    async def main() -> None:
        async with process(lisa, poll_seconds=30) as here, process(lisa, listen=False) as there:
            rnd, mcp = tool_round(here, name, session_id, 30)
            decided: list[asyncio.Task[None]] = []
            woken_at: list[float] = []
            clock = asyncio.get_running_loop().time

            async def decide_elsewhere(call_id: str) -> None:
                with pytest.raises(NotFound):
                    await there.decide(name, other_session, call_id, True)
                with pytest.raises(NotFound):
                    await there.decide("mallory", session_id, call_id, True)
                woken_at.append(clock())
                await there.decide(name, session_id, call_id, True)
                with pytest.raises(Conflict, match="already decided"):
                    await there.decide(name, session_id, call_id, False)

            def emit(event: str, data: dict[str, Any]) -> None:
                if event == "tool_approval":
                    decided.append(asyncio.ensure_future(decide_elsewhere(data["call_id"])))

            messages = await rnd.run([call("far-" + secrets.token_hex(3))], "thinking", emit, asyncio.Event())
            await decided[0]
            # woken by the notification, not by the poll (30 s here)
            took = clock() - woken_at[0]
            assert took < 5
            print(f"decision in another process to the call run: {took * 1000:.1f} ms")
            assert messages[0]["content"] == "thinking" and messages[-1]["content"] == "ran"
            assert mcp.calls == [{"text": "x"}] and rnd.records[0]["approved"] is True

    run(main)


def test_without_notifications_the_poll_finds_the_decision(lisa: LisaServer, owner: tuple[str, str, str]) -> None:
    name, session_id, _ = owner

    async def main() -> None:
        async with process(lisa, poll_seconds=0.2, listen=False) as deaf, process(lisa, listen=False) as there:
            rnd, mcp = tool_round(deaf, name, session_id, 30)
            started = asyncio.get_running_loop().time()

            decided: list[asyncio.Task[None]] = []

            def emit(event: str, data: dict[str, Any]) -> None:
                if event == "tool_approval":
                    decided.append(asyncio.ensure_future(there.decide(name, session_id, data["call_id"], False)))

            await rnd.run([call("deaf-" + secrets.token_hex(3))], "", emit, asyncio.Event())
            await decided[0]
            assert asyncio.get_running_loop().time() - started < 5
            assert rnd.records[0]["approved"] is False and not mcp.calls

    run(main)


def test_a_client_that_leaves_ends_the_wait(lisa: LisaServer, owner: tuple[str, str, str]) -> None:
    name, session_id, _ = owner

    async def main() -> None:
        async with process(lisa) as approvals:
            rnd, _ = tool_round(approvals, name, session_id, 30)
            left = asyncio.Event()
            asyncio.get_running_loop().call_later(0.3, left.set)
            started = asyncio.get_running_loop().time()
            call_id = "gone-" + secrets.token_hex(3)
            await rnd.run([call(call_id)], "", lambda n, d: None, left)
            assert asyncio.get_running_loop().time() - started < 5 and rnd.records[-1]["approved"] is False
            with pytest.raises(Conflict, match="no longer waiting"):
                await approvals.decide(name, session_id, call_id, True)

    run(main)


def test_unknown_calls_are_not_found(lisa: LisaServer, owner: tuple[str, str, str]) -> None:
    name, session_id, _ = owner

    async def main() -> None:
        async with process(lisa, listen=False) as approvals:
            for call_id in ("nope", "x" * 500):
                with pytest.raises(NotFound):
                    await approvals.decide(name, session_id, call_id, True)

    run(main)


def test_overlong_model_call_ids_are_replaced(lisa: LisaServer, owner: tuple[str, str, str]) -> None:
    name, session_id, _ = owner

    async def main() -> None:
        async with process(lisa) as approvals:
            rnd, _ = tool_round(approvals, name, session_id, 0.2)
            seen: list[str] = []
            messages = await rnd.run(
                [call("y" * 300)], "", lambda n, d: seen.append(d.get("call_id", "")), asyncio.Event()
            )
            assert seen[0] == "call_0" and messages[0]["tool_calls"][0]["id"] == "call_0"
            assert messages[-1]["tool_call_id"] == "call_0"

    run(main)


def test_a_turn_stopped_with_the_server_no_longer_waits(lisa: LisaServer, owner: tuple[str, str, str]) -> None:
    name, session_id, _ = owner

    async def main() -> None:
        async with process(lisa) as approvals:
            rnd, mcp = tool_round(approvals, name, session_id, 30)
            asked = asyncio.Event()
            call_id = "stopped-" + secrets.token_hex(3)
            running = asyncio.ensure_future(rnd.run([call(call_id)], "", lambda n, d: asked.set(), asyncio.Event()))
            await asyncio.wait_for(asked.wait(), 10)
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
            with pytest.raises(Conflict, match="no longer waiting"):
                await approvals.decide(name, session_id, call_id, True)
            assert not mcp.calls

    run(main)

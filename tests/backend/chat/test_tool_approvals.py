"""Safe-mode approvals of the chat tool loop in one process (backend/chat/tool_loop.py): the wait's time limit,
a client that leaves, and decisions for calls that are unknown, someone else's or no longer waiting."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from backend.auth.principal import Principal
from backend.chat.tool_loop import ToolApprovals, ToolLoop, ToolRound
from backend.errors import Conflict, NotFound
from backend.mcp.schemas import ToolRef, ToolResult

ALICE = Principal(username="alice", groups=frozenset(), is_admin=False)


class FakeMcp:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def call_tool(self, principal: Principal, server_id: str, tool: str, arguments: dict[str, Any],
                        *, include_personal: bool) -> ToolResult:  # fmt: skip
        self.calls.append(arguments)
        return ToolResult(text="ran", is_error=False)


async def _never(*_: Any) -> bool:
    return False


def tool_round(timeout: float) -> tuple[ToolRound, FakeMcp, list[tuple[str, dict[str, Any]]]]:
    mcp = FakeMcp()
    loop = ToolLoop(cast(Any, mcp), _never, approval_timeout=timeout)
    lookup = {"srv__echo": ToolRef("srv", "echo")}
    return ToolRound(loop, ALICE, "ses_1", "safe", False, lookup), mcp, []


def call(call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "srv__echo", "arguments": '{"text": "x"}'}}


def test_no_decision_in_time_is_a_denial_and_a_late_one_conflicts() -> None:
    async def main() -> None:
        rnd, mcp, events = tool_round(0.2)
        messages = await rnd.run([call("c1")], "", lambda n, d: events.append((n, d)), asyncio.Event())
        assert messages[-1] == {"role": "tool", "tool_call_id": "c1", "content": "the user denied this tool call"}
        assert [n for n, _ in events] == ["tool_approval", "tool_result"] and not mcp.calls
        assert rnd.records[0]["approved"] is False
        with pytest.raises(Conflict):
            rnd.loop.approvals.decide("alice", "ses_1", "c1", True)
        with pytest.raises(NotFound):  # someone else, or another session: as if it did not exist
            rnd.loop.approvals.decide("bob", "ses_1", "c1", True)

    asyncio.run(main())


def test_approval_runs_the_call_and_a_client_that_leaves_ends_the_wait() -> None:
    async def main() -> None:
        rnd, mcp, events = tool_round(30)
        approvals = rnd.loop.approvals

        def emit(name: str, data: dict[str, Any]) -> None:
            events.append((name, data))
            if name == "tool_approval":
                with pytest.raises(NotFound):
                    approvals.decide("alice", "ses_other", data["call_id"], True)
                asyncio.get_running_loop().call_soon(approvals.decide, "alice", "ses_1", data["call_id"], True)

        messages = await rnd.run([call("c2")], "thinking", emit, asyncio.Event())
        assert messages[0]["content"] == "thinking" and messages[-1]["content"] == "ran"
        assert mcp.calls == [{"text": "x"}] and rnd.records[0]["approved"] is True

        left = asyncio.Event()
        asyncio.get_running_loop().call_later(0.1, left.set)
        started = asyncio.get_running_loop().time()
        await rnd.run([call("c3")], "", lambda n, d: None, left)
        assert asyncio.get_running_loop().time() - started < 5 and rnd.records[-1]["approved"] is False

    asyncio.run(main())


def test_unknown_calls_are_not_found() -> None:
    with pytest.raises(NotFound):
        ToolApprovals().decide("alice", "ses_1", "nope", True)

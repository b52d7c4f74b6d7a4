"""The MCP tool loop of a chat turn (docs/chat.md, "Tools (MCP)").

A turn that selects tools (``tools`` in the turn, else ``mcp_tools`` in the session's settings) sends their OpenAI
definitions with the request (``ToolLoop.prepare``). When an answer ends with tool calls, ``ToolRound.run`` runs each
one — at once (``autopilot``) or once the user approves it (``safe``: a ``tool_approval`` event, then a wait for
``POST /api/sessions/{id}/tool-calls/{call_id}``, bounded by ``chat_tool_approval_timeout``; no decision in time is a
denial) — and returns the messages to send back (the assistant's calls, one ``tool`` message each). At most
``MAX_TOOL_CALLS`` calls run in a turn; past it a call is refused, the next request carries no tools, and a model that
still asks is stopped.

Pending approvals live in the database (backend/chat/tool_approvals.py), so the decision may reach any backend
process; the one running the turn is woken over LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from backend.auth.principal import Principal
from backend.chat.tool_approvals import MAX_CALL_ID, ToolApprovals
from backend.configuration.features import Feature
from backend.errors import LisaError
from backend.mcp.schemas import ToolRef, ToolResult
from backend.mcp.service import McpService

MAX_TOOL_CALLS = 20  # tool calls one turn may run
RESULT_KEPT_CHARS = 4000  # of a result's text, in the answer's metadata

Emit = Callable[[str, dict[str, Any]], None]


@dataclass
class ToolRound:
    """One turn's tools: what the model may call and what was called."""

    loop: ToolLoop
    principal: Principal
    session_id: str
    mode: str
    include_personal: bool
    lookup: dict[str, ToolRef]
    records: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0  # calls counted against MAX_TOOL_CALLS
    capped: bool = False  # the cap was reached: the next request carries no tools, and no further round runs

    async def run(
        self, calls: list[dict[str, Any]], text: str, emit: Emit, cancelled: asyncio.Event
    ) -> list[dict[str, Any]]:
        """Runs (or refuses) the answer's calls; the messages to append to the request."""
        calls = [{**c, "id": _call_id(c.get("id"), len(self.records) + i)} for i, c in enumerate(calls)]
        messages: list[dict[str, Any]] = [{"role": "assistant", "content": text or None, "tool_calls": calls}]
        for call in calls:
            if cancelled.is_set():
                content = "the user left before this tool call ran"
            else:
                content = await self._one(call, emit, cancelled)
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
        return messages

    async def _one(self, call: dict[str, Any], emit: Emit, cancelled: asyncio.Event) -> str:
        call_id, name = str(call["id"]), str(call["function"]["name"])
        ref = self.lookup.get(name)
        record: dict[str, Any] = {"id": call_id, "name": name, "server_id": ref.server_id if ref else None,
                                  "tool": ref.tool if ref else None, "arguments": call["function"]["arguments"]}  # fmt: skip
        started = time.perf_counter()
        approved: bool | None = None
        try:
            arguments = orjson.loads(call["function"]["arguments"] or "{}")
        except orjson.JSONDecodeError:
            arguments = None
        if self.calls >= MAX_TOOL_CALLS:
            self.capped = True
            result = ToolResult(f"error: the limit of {MAX_TOOL_CALLS} tool calls per turn was reached; "
                                "answer without tools", is_error=True)  # fmt: skip
        elif ref is None:
            self.calls += 1
            result = ToolResult(f"error: no tool named '{name}' is available", is_error=True)
        elif not isinstance(arguments, dict):
            self.calls += 1
            result = ToolResult("error: the arguments are not a JSON object", is_error=True)
        else:
            self.calls += 1
            record["arguments"] = arguments
            approved = True if self.mode == "autopilot" else await self._approval(record, emit, cancelled)
            if approved:
                emit("tool_call", {k: record[k] for k in ("id", "name", "server_id", "tool", "arguments")})
                result = await self._call(ref, arguments)
            else:
                result = ToolResult("the user denied this tool call", is_error=True)
        text = result.text
        record.update(result=text[:RESULT_KEPT_CHARS], truncated=result.truncated or len(text) > RESULT_KEPT_CHARS,
                      is_error=result.is_error, approved=approved,
                      duration_ms=round((time.perf_counter() - started) * 1000, 3))  # fmt: skip
        self.records.append(record)
        emit("tool_result", {k: record[k] for k in ("id", "name", "result", "is_error", "approved", "duration_ms")})
        return text

    async def _approval(self, record: dict[str, Any], emit: Emit, cancelled: asyncio.Event) -> bool:
        approvals, timeout = self.loop.approvals, self.loop.approval_timeout
        wait = await approvals.open(self.principal.username, self.session_id, record["id"], timeout)
        emit("tool_approval", {"call_id": record["id"], **{k: record[k] for k in ("name", "server_id", "tool", "arguments")},
                               "timeout_seconds": timeout})  # fmt: skip
        return await approvals.wait(wait, timeout, cancelled)

    async def _call(self, ref: ToolRef, arguments: dict[str, Any]) -> ToolResult:
        try:
            return await self.loop.mcp.call_tool(
                self.principal, ref.server_id, ref.tool, arguments, include_personal=self.include_personal
            )
        except LisaError as exc:
            return ToolResult(f"error: {exc.message}", is_error=True)


class ToolLoop:
    def __init__(
        self,
        mcp: McpService,
        personal_enabled: Callable[[Feature, Principal], Awaitable[bool]],
        approvals: ToolApprovals,
        *,
        approval_timeout: float,
    ) -> None:
        self.mcp = mcp
        self.personal_enabled = personal_enabled
        self.approval_timeout = approval_timeout
        self.approvals = approvals

    async def prepare(
        self,
        principal: Principal,
        session_id: str,
        selected: list[str] | None,
        mode: str,
        settings: Mapping[Any, Any],
        payload: dict[str, Any],
    ) -> ToolRound | None:
        """The turn's tools (the turn's selection, else the session's ``mcp_tools``), added to ``payload``; None when
        none are selected or none of them is available."""
        chosen = selected if selected is not None else settings.get("mcp_tools")
        if not chosen:
            return None
        include_personal = await self.personal_enabled(Feature.mcp_connections, principal)
        definitions, lookup = await self.mcp.openai_tools(principal, list(chosen), include_personal)
        if not definitions:
            return None
        payload["tools"] = definitions
        return ToolRound(self, principal, session_id, mode, include_personal, lookup)


def _call_id(given: Any, index: int) -> str:
    """The model's id for a call, or one of ours when it gave none (or one too long to keep)."""
    if isinstance(given, str) and 0 < len(given) <= MAX_CALL_ID:
        return given
    return f"call_{index}"

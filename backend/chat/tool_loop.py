"""The MCP tool loop of a chat turn (docs/chat.md, "Tools (MCP)").

A turn that selects tools (``tools`` in the turn, else ``mcp_tools`` in the session's settings) sends their OpenAI
definitions with the request (``ToolLoop.prepare``). When an answer ends with tool calls, ``ToolRound.run`` runs each
one — at once (``autopilot``) or once the user approves it (``safe``: a ``tool_approval`` event, then a wait for
``POST /api/sessions/{id}/tool-calls/{call_id}``, bounded by ``chat_tool_approval_timeout``; no decision in time is a
denial) — and returns the messages to send back (the assistant's calls, one ``tool`` message each). At most
``MAX_TOOL_CALLS`` calls run in a turn; past it a call is refused, the next request carries no tools, and a model that
still asks is stopped.

Pending approvals live in this process (``ToolApprovals``, futures keyed by call id with owner and session): with
several backend replicas the decision must reach the process that runs the turn (sticky sessions by session id).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from backend.auth.principal import Principal
from backend.configuration.features import Feature
from backend.errors import Conflict, LisaError, NotFound
from backend.mcp.schemas import ToolRef, ToolResult
from backend.mcp.service import McpService

MAX_TOOL_CALLS = 20  # tool calls one turn may run
RESULT_KEPT_CHARS = 4000  # of a result's text, in the answer's metadata
FINISHED_KEPT = 1000  # decided or expired call ids remembered (a late decision answers 409, not 404)

Emit = Callable[[str, dict[str, Any]], None]


@dataclass
class _Pending:
    owner: str
    session_id: str
    future: asyncio.Future[bool]


class ToolApprovals:
    """The calls waiting for a user's decision, in this process."""

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._finished: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def open(self, owner: str, session_id: str, call_id: str) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = _Pending(owner, session_id, future)
        return future

    def close(self, call_id: str) -> None:
        pending = self._pending.pop(call_id, None)
        if pending is not None:
            self._finished[call_id] = (pending.owner, pending.session_id)
            while len(self._finished) > FINISHED_KEPT:
                self._finished.popitem(last=False)

    def decide(self, owner: str, session_id: str, call_id: str, approve: bool) -> None:
        """The user's decision. 404: no such call of theirs in that session; 409: it was decided or timed out."""
        pending = self._pending.get(call_id)
        if pending is not None and (pending.owner, pending.session_id) == (owner, session_id):
            if pending.future.done():
                raise Conflict(f"tool call '{call_id}' was already decided")
            pending.future.set_result(approve)
            return
        if self._finished.get(call_id) == (owner, session_id):
            raise Conflict(f"tool call '{call_id}' is no longer waiting for a decision")
        raise NotFound(f"tool call '{call_id}' not found in session '{session_id}'")


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
        calls = [{**c, "id": c.get("id") or f"call_{len(self.records) + i}"} for i, c in enumerate(calls)]
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
        approvals, call_id = self.loop.approvals, record["id"]
        future = approvals.open(self.principal.username, self.session_id, call_id)
        emit("tool_approval", {"call_id": call_id, **{k: record[k] for k in ("name", "server_id", "tool", "arguments")},
                               "timeout_seconds": self.loop.approval_timeout})  # fmt: skip
        left = asyncio.ensure_future(cancelled.wait())
        waiting: set[asyncio.Future[Any]] = {future, left}
        try:
            await asyncio.wait(waiting, timeout=self.loop.approval_timeout, return_when=asyncio.FIRST_COMPLETED)
            return future.done() and not future.cancelled() and future.result()
        finally:
            left.cancel()
            if not future.done():
                future.cancel()
            approvals.close(call_id)

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
        *,
        approval_timeout: float,
    ) -> None:
        self.mcp = mcp
        self.personal_enabled = personal_enabled
        self.approval_timeout = approval_timeout
        self.approvals = ToolApprovals()

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

"""MCP servers and their tools, for the API and the chat's tool loop (``services.mcp``).

Registrations are ``servers`` (backend/mcp/registrations.py). Tools: ``list_tools`` connects to every server the caller may use (at once, each with a time limit), reuses a
server's tool list for ``mcp_tools_cache_seconds``, and reports a server that fails in ``errors`` instead of failing
the whole list. ``call_tool`` checks access again (the server usable by the caller, enabled, the tool allowed and
offered by the server), then calls it with a time limit and bounds what it returns. ``openai_tools`` turns the tools
into OpenAI function tools, with a lookup from each function name back to (server id, tool).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED
from sqlalchemy.engine import RowMapping

from backend.auth.principal import Principal
from backend.errors import Conflict, Forbidden, NotFound, UpstreamError, UpstreamTimeout
from backend.mcp import store as rules
from backend.mcp.client import StatusRecorder, describe, http_session, leaves, list_all_tools, tool_result
from backend.mcp.hosted import HostedServers
from backend.mcp.registrations import McpRegistrations
from backend.mcp.schemas import (
    McpServerError,
    McpServerTool,
    McpServerToolList,
    McpTool,
    McpToolList,
    ToolRef,
    ToolResult,
    Transport,
)
from backend.mcp.store import McpServerStore
from backend.mcp.tool_names import openai_tools, select
from backend.net.egress import EgressGuard

log = logging.getLogger(__name__)
FAILURE_CACHE_SECONDS = 5.0  # a failing server is asked again this soon at the latest


class McpService:
    def __init__(
        self,
        store: McpServerStore,
        egress: EgressGuard,
        hosted: HostedServers,
        *,
        connect_timeout: float,
        call_timeout: float,
        cache_seconds: float,
        max_output_chars: int,
    ) -> None:
        self.store = store
        self.egress = egress
        self.hosted = hosted
        self.servers = McpRegistrations(store, egress, hosted)  # registering, seeing, changing, deleting servers
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.cache_seconds = cache_seconds
        self.max_output_chars = max_output_chars
        # server id -> (good until, the row's updated_at, its tools or why they could not be listed)
        self._tools: dict[str, tuple[float, object, list[dict[str, Any]] | str]] = {}
        self._refreshing: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()

    # --- change notices ---------------------------------------------------------------------------------------------
    def on_change(self, topic: str) -> None:
        if topic == "*":
            self._tools.clear()
        elif topic.startswith(rules.TOPIC_PREFIX):
            server_id = topic.removeprefix(rules.TOPIC_PREFIX)
            self._tools.pop(server_id, None)
            if self.hosted.status(server_id) is not None:
                task = asyncio.get_running_loop().create_task(self._reconcile(server_id))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _reconcile(self, server_id: str) -> None:
        """Stops the hosted process of a server deleted, disabled or no longer stdio; a changed command starts anew
        on next use (``HostedServers.session`` compares the configuration)."""
        try:
            row = await self.store.get(server_id)
            if row is None or not row["enabled"] or row["transport"] != Transport.stdio:
                await self.hosted.retire(server_id)
        except Exception:
            log.exception("could not reconcile the hosted MCP server %s", server_id)

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self.hosted.stop()

    # --- connections -----------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def _session(
        self, row: RowMapping, status: StatusRecorder, read_timeout: float
    ) -> AsyncIterator[ClientSession]:
        config = self.store.config(row)
        if config.transport == Transport.stdio:
            yield await self.hosted.session(config, self.connect_timeout)
            return
        async with http_session(config, self.egress, self.connect_timeout, read_timeout, status) as session:
            yield session

    async def _server_tools(self, row: RowMapping) -> list[dict[str, Any]] | str:
        """The server's tools (all of them, before its allow list), or why they could not be listed."""
        server_id, now = row["id"], time.monotonic()
        cached = self._tools.get(server_id)
        if cached is not None and cached[0] > now and cached[1] == row["updated_at"]:
            return cached[2]
        async with self._refreshing.setdefault(server_id, asyncio.Lock()):
            cached = self._tools.get(server_id)
            if cached is not None and cached[0] > time.monotonic() and cached[1] == row["updated_at"]:
                return cached[2]
            status = StatusRecorder()
            outcome: list[dict[str, Any]] | str
            try:
                async with asyncio.timeout(self.connect_timeout), self._session(row, status, self.connect_timeout) as s:
                    outcome = await list_all_tools(s)
                keep = self.cache_seconds
            except Exception as exc:
                outcome, keep = describe(exc, status.status), min(self.cache_seconds, FAILURE_CACHE_SECONDS)
                log.info("MCP server %s (%s): listing tools failed: %s", row["name"], server_id, outcome)
            self._tools[server_id] = (time.monotonic() + keep, row["updated_at"], outcome)
            return outcome

    @staticmethod
    def _allowed(row: RowMapping, tool: str) -> bool:
        allowed = row["tools_allowed"]
        return not allowed or tool in allowed

    @staticmethod
    def _tool(row: RowMapping, tool: dict[str, Any]) -> dict[str, Any]:
        return {"server_id": row["id"], "server_name": row["name"], **tool}

    # --- tools -----------------------------------------------------------------------------------------------------
    async def list_tools(self, principal: Principal, include_personal: bool = True) -> McpToolList:
        """Every tool the principal may use now; servers that fail are listed in ``errors``."""
        rows = await self.store.rows(rules.usable_filter(principal, include_personal))
        outcomes = await asyncio.gather(*(self._server_tools(r) for r in rows))
        tools: list[McpTool] = []
        errors: list[McpServerError] = []
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, str):
                errors.append(McpServerError(server_id=row["id"], server_name=row["name"], error=outcome))
                continue
            tools.extend(McpTool.model_validate(self._tool(row, t)) for t in outcome if self._allowed(row, t["name"]))
        return McpToolList(tools=tools, errors=errors)

    async def server_tools(self, server_id: str, principal: Principal) -> McpServerToolList:
        """All of one server's tools, each marked allowed or not: for whoever manages it (to set the allow list)."""
        row = await self.servers.visible_row(server_id, principal)
        self.servers.check_manage(principal, row)
        outcome = await self._server_tools(row)
        if isinstance(outcome, str):
            return McpServerToolList(tools=[], error=outcome)
        return McpServerToolList(
            tools=[
                McpServerTool.model_validate({**self._tool(row, t), "allowed": self._allowed(row, t["name"])})
                for t in outcome
            ],
            error=None,
        )

    async def openai_tools(
        self, principal: Principal, selected: list[str] | None = None, include_personal: bool = True
    ) -> tuple[list[dict[str, Any]], dict[str, ToolRef]]:
        """OpenAI function tools for the MCP tools the principal may use, narrowed to ``selected`` when given: each
        entry a server id (all its tools) or ``<server id>/<tool name>``; entries that match nothing are skipped.
        Returns the definitions and the lookup from function name to (server id, tool)."""
        listing = await self.list_tools(principal, include_personal)
        return openai_tools(select(listing.tools, selected))

    async def call_tool(
        self,
        principal: Principal,
        server_id: str,
        tool_name: str,
        arguments: dict[str, Any],
        *,
        include_personal: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 - the tool's own time limit, mcp_call_timeout by default
    ) -> ToolResult:
        """Calls a tool the principal may use. 404: no such server or tool for this caller (or not allowed); 409:
        the server is disabled; 502/504: it failed or did not answer in time. A failure the tool itself reports is
        a result with ``is_error`` (so a model can read it)."""
        row = await self.servers.visible_row(server_id, principal)
        if row["owner"] is not None and row["owner"] != principal.username:
            raise NotFound(f"MCP server '{server_id}' not found")  # an admin sees it, but it is not theirs to use
        if row["owner"] is not None and not include_personal:
            raise Forbidden("personal MCP servers are turned off (the mcp_connections setting)")
        if not row["enabled"]:
            raise Conflict(f"MCP server '{server_id}' is disabled")
        return await self._call(row, tool_name, arguments, timeout or self.call_timeout)

    async def call_tool_by_hand(
        self,
        principal: Principal,
        server_id: str,
        tool_name: str,
        arguments: dict[str, Any],
        *,
        include_personal: bool,
        timeout: float | None = None,  # noqa: ASYNC109 - at most mcp_call_timeout
    ) -> ToolResult:
        """A tool called from the API to try it: by admins (global servers) or owners (their personal servers)."""
        row = await self.servers.visible_row(server_id, principal)
        if row["owner"] is None and not principal.is_admin:
            raise Forbidden("trying a global MCP server's tools needs the admin group")
        limit = min(timeout or self.call_timeout, self.call_timeout)
        return await self.call_tool(
            principal, server_id, tool_name, arguments, include_personal=include_personal, timeout=limit
        )

    async def _call(self, row: RowMapping, tool_name: str, arguments: dict[str, Any], timeout: float) -> ToolResult:  # noqa: ASYNC109
        name = row["name"]
        offered = await self._server_tools(row)
        if isinstance(offered, str):
            raise UpstreamError(f"MCP server '{name}': {offered}")
        if not self._allowed(row, tool_name) or all(t["name"] != tool_name for t in offered):
            raise NotFound(f"tool '{tool_name}' not found on MCP server '{row['id']}'")
        status = StatusRecorder()
        try:
            async with asyncio.timeout(timeout), self._session(row, status, timeout) as session:
                result = await session.call_tool(tool_name, arguments)
        except Exception as exc:
            found = leaves(exc)
            if any(isinstance(e, TimeoutError) for e in found):
                raise UpstreamTimeout(
                    f"MCP server '{name}': tool '{tool_name}' gave no answer within {timeout:g}s"
                ) from None
            protocol = [e for e in found if isinstance(e, MCPError) and e.code != CONNECTION_CLOSED]
            if protocol and status.status is None:  # the server refused the call itself: the model may read why
                return ToolResult(text=f"error: {protocol[0].message}", is_error=True)
            why = describe(exc, status.status)
            raise UpstreamError(f"MCP server '{name}': tool '{tool_name}' failed: {why}") from None
        return tool_result(result, self.max_output_chars)

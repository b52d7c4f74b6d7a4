"""MCP servers and their tools, for the API and the chat's tool loop.

Registrations: admins register global servers (streamable HTTP, or a stdio command LISA runs: backend/mcp/hosted.py);
anyone may register personal streamable HTTP servers, which only they see and use. Who sees what is in
backend/mcp/store.py (``visible``, ``usable``); who may change a registration: admins, and owners their own.

Tools: ``list_tools`` connects to every server the caller may use (at once, each with a time limit), reuses a
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
from backend.errors import BadRequest, Conflict, Forbidden, NotFound, UpstreamError, UpstreamTimeout
from backend.mcp import store as rules
from backend.mcp.client import StatusRecorder, describe, http_session, leaves, list_all_tools, tool_result
from backend.mcp.hosted import HostedServers
from backend.mcp.schemas import (
    McpServerCreate,
    McpServerError,
    McpServerPage,
    McpServerPublic,
    McpServerTool,
    McpServerToolList,
    McpServerUpdate,
    McpTool,
    McpToolList,
    Scope,
    ToolRef,
    ToolResult,
    Transport,
)
from backend.mcp.store import McpServerStore, new_id
from backend.mcp.tool_names import openai_tools
from backend.net.egress import EgressGuard
from backend.paging import PageParams

log = logging.getLogger(__name__)
FAILURE_CACHE_SECONDS = 5.0  # a failing server is asked again this soon at the latest
STDIO_FIELDS = ("command", "args", "env")


def _check_shape(values: dict[str, Any]) -> None:
    """The fields a transport needs and the ones it cannot have; a personal server has no groups (400)."""
    if values["transport"] == Transport.streamable_http:
        if not values.get("url"):
            raise BadRequest("a streamable_http MCP server needs url (its MCP endpoint, e.g. https://host/mcp)")
        given = [f for f in ("command", "args", "env_names") if values.get(f)]
        if given:
            raise BadRequest(f"a streamable_http MCP server takes no {', '.join(given).replace('env_names', 'env')}")
    else:
        if not values.get("command"):
            raise BadRequest("a stdio MCP server needs command (the executable LISA runs)")
        given = [f for f in ("url", "header_names") if values.get(f)]
        if given:
            raise BadRequest(f"a stdio MCP server takes no {', '.join(given).replace('header_names', 'headers')}")
    if values.get("owner") is not None and values.get("allowed_groups"):
        raise BadRequest("a personal MCP server is only its owner's: allowed_groups applies to global servers")


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

    # --- registrations ---------------------------------------------------------------------------------------------
    def _public(self, row: RowMapping, principal: Principal) -> McpServerPublic:
        admin = principal.is_admin
        stdio = row["transport"] == Transport.stdio
        return McpServerPublic.model_validate(
            {
                **row,
                "scope": Scope.global_ if row["owner"] is None else Scope.personal,
                "has_headers": row["headers_encrypted"] is not None,
                "has_env": row["env_encrypted"] is not None,
                "command": row["command"] if admin else None,
                "args": list(row["args"]) if admin and stdio else None,
                "process": self.hosted.status(row["id"]) if admin and stdio else None,
            }
        )

    async def _visible_row(self, server_id: str, principal: Principal) -> RowMapping:
        row = await self.store.get(server_id)
        if row is None or not rules.visible(principal, row):
            raise NotFound(f"MCP server '{server_id}' not found")
        return row

    @staticmethod
    def _check_manage(principal: Principal, row: RowMapping) -> None:
        if not rules.visible(principal, row):
            raise NotFound(f"MCP server '{row['id']}' not found")
        if not principal.is_admin and row["owner"] != principal.username:
            raise Forbidden("changing a global MCP server needs the admin group")

    async def _check_url(self, name: str, url: object) -> None:
        if url is not None:
            await self.egress.check_url(str(url), f"MCP server '{name}': url")

    def _secret_values(self, body: McpServerCreate | McpServerUpdate) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "headers" in body.model_fields_set:
            headers = {k: v.get_secret_value() for k, v in (body.headers or {}).items()}
            values["headers_encrypted"], values["header_names"] = self.store.seal(headers)
        if "env" in body.model_fields_set:
            env = {k: v.get_secret_value() for k, v in (body.env or {}).items()}
            values["env_encrypted"], values["env_names"] = self.store.seal(env)
        return values

    @staticmethod
    def _plain_values(body: McpServerCreate | McpServerUpdate) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key in ("name", "description", "url", "command", "args", "allowed_groups", "enabled", "tools_allowed"):
            if key not in body.model_fields_set:
                continue
            value = getattr(body, key)
            if key == "url" and value is not None:
                value = str(value)
            elif key == "allowed_groups":
                value = sorted(set(value or []))
            elif key == "args":
                value = list(value or [])
            elif key == "tools_allowed":
                value = sorted(set(value)) if value else None
            elif key == "description":
                value = value or ""
            elif key in ("name", "enabled") and value is None:
                raise BadRequest(f"{key} cannot be null")
            values[key] = value
        return values

    async def create(self, body: McpServerCreate, principal: Principal) -> McpServerPublic:
        if body.scope == Scope.global_ and not principal.is_admin:
            raise Forbidden("registering a global MCP server needs the admin group")
        if body.transport == Transport.stdio and not principal.is_admin:
            raise Forbidden("a stdio MCP server runs a command on the LISA server: admins only")
        values = {
            "id": new_id(),
            "description": "",
            "args": [],
            "allowed_groups": [],
            "enabled": True,
            "tools_allowed": None,
            **self._plain_values(body),
            **self._secret_values(body),
            "transport": body.transport.value,
            "owner": principal.username if body.scope == Scope.personal else None,
            "created_by": principal.username,
        }
        _check_shape(values)
        await self._check_url(body.name, values.get("url"))
        return self._public(await self.store.insert(values, principal), principal)

    async def get(self, server_id: str, principal: Principal) -> McpServerPublic:
        return self._public(await self._visible_row(server_id, principal), principal)

    async def page(self, principal: Principal, params: PageParams, all_users: bool = False) -> McpServerPage:
        if all_users and not principal.is_admin:
            raise Forbidden("listing every user's MCP servers needs the admin group")
        rows, next_cursor = await self.store.page(rules.visible_filter(principal, all_users), params)
        return McpServerPage(data=[self._public(r, principal) for r in rows], next_cursor=next_cursor)

    async def update(self, server_id: str, body: McpServerUpdate, principal: Principal) -> McpServerPublic:
        if not principal.is_admin and any(f in body.model_fields_set for f in STDIO_FIELDS):
            raise Forbidden("a stdio MCP server runs a command on the LISA server: admins only")
        plain, sealed = self._plain_values(body), self._secret_values(body)
        await self._check_url(server_id, plain.get("url"))

        def changes(current: RowMapping) -> dict[str, Any]:
            self._check_manage(principal, current)
            _check_shape({**current, **plain, **sealed})
            return {**plain, **sealed}

        return self._public(await self.store.update(server_id, changes, principal), principal)

    async def delete(self, server_id: str, principal: Principal) -> None:
        row = await self.store.get(server_id)
        if row is None:
            raise NotFound(f"MCP server '{server_id}' not found")
        self._check_manage(principal, row)
        await self.store.delete(server_id, principal)
        await self.hosted.retire(server_id)

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
        row = await self._visible_row(server_id, principal)
        self._check_manage(principal, row)
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
        tools = listing.tools
        if selected is not None:
            wanted = set(selected)
            tools = [t for t in tools if t.server_id in wanted or f"{t.server_id}/{t.name}" in wanted]
        return openai_tools(tools)

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
        row = await self._visible_row(server_id, principal)
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
        row = await self._visible_row(server_id, principal)
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

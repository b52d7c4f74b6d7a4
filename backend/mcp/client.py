"""Talking to one MCP server with the official ``mcp`` SDK: a session over streamable HTTP (through the egress guard,
with the server's sealed headers), the tool listing, and a tool result made safe to keep (bounded, JSON-ready).

A failure becomes one readable sentence (``describe``): the SDK's task groups wrap errors in exception groups, and a
refused HTTP status arrives as a bare JSON-RPC error, so the status is recorded on the side and named.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, PaginatedRequestParams

from backend.mcp.schemas import ToolResult
from backend.mcp.store import ServerConfig
from backend.net.egress import EgressGuard

CLIENT_NAME = "lisa"
MAX_SCHEMA_CHARS = 64_000  # an input schema larger than this is not passed on to models


class ServerFailure(Exception):
    """A server that could not be reached or answered with a protocol error; the message says why, for people."""


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def describe(exc: BaseException, status: int | None = None) -> str:
    """One sentence for a failed connection or request (never a header or an environment value: those are not in
    the SDK's errors, which name the URL, status and JSON-RPC message only)."""
    found = leaves(exc)
    interesting = [e for e in found if not isinstance(e, GeneratorExit)] or found
    first = interesting[0]
    if status is not None and status >= 400:
        return f"the server answered HTTP {status}"
    if isinstance(first, TimeoutError):
        return "no answer in time"
    if isinstance(first, MCPError):
        if first.code == CONNECTION_CLOSED:
            return "the connection to the server closed (a stdio server's process ended?)"
        return f"the server answered with an error: {first.message}"
    if isinstance(first, httpx2.ConnectError | ConnectionError):
        return f"cannot connect: {first}" if str(first) else "cannot connect"
    if isinstance(first, httpx2.TimeoutException):
        return "no answer in time"
    if isinstance(first, httpx2.HTTPError | OSError):
        return f"{type(first).__name__}: {first}"
    if isinstance(first, ServerFailure):
        return str(first)
    return f"{type(first).__name__}: {first}"[:500]


class StatusRecorder:
    """Remembers the last error status an HTTP server answered (the SDK turns it into a generic JSON-RPC error)."""

    def __init__(self) -> None:
        self.status: int | None = None

    async def __call__(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self.status = response.status_code


@asynccontextmanager
async def http_session(
    config: ServerConfig, egress: EgressGuard, connect_timeout: float, read_timeout: float, status: StatusRecorder
) -> AsyncIterator[ClientSession]:
    """An initialised session with a streamable HTTP server; every connection passes the egress guard."""
    assert config.url is not None
    client = httpx2.AsyncClient(
        transport=egress.httpx2_transport(),
        headers=config.headers,
        timeout=httpx2.Timeout(connect_timeout, read=read_timeout),
        event_hooks={"response": [status]},
    )
    async with (
        client,
        streamable_http_client(config.url, http_client=client) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        yield session


async def list_all_tools(session: ClientSession, max_pages: int = 20) -> list[dict[str, Any]]:
    """Every tool of the server (following its pages), as plain dicts: name, description, input_schema."""
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(max_pages):
        result = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        for tool in result.tools:
            schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
            if len(str(schema)) > MAX_SCHEMA_CHARS:
                schema = {"type": "object", "description": "(the tool's input schema is too large to show)"}
            tools.append({"name": tool.name, "description": tool.description or "", "input_schema": schema})
        cursor = result.next_cursor
        if not cursor:
            break
    return tools


def _content_text(item: dict[str, Any]) -> str:
    kind = item.get("type")
    if kind == "text":
        return str(item.get("text", ""))
    if kind == "resource":
        resource = item.get("resource") or {}
        if "text" in resource:
            return str(resource["text"])
        return f"[resource {resource.get('uri', '')} ({resource.get('mimeType', 'binary')})]"
    if kind == "resource_link":
        return f"[resource link {item.get('uri', '')}]"
    if kind in ("image", "audio"):
        return f"[{kind} ({item.get('mimeType', 'unknown type')})]"
    return f"[{kind} content]"


def tool_result(result: Any, max_chars: int) -> ToolResult:
    """A ``CallToolResult`` as LISA keeps it: the text joined and cut at ``max_chars``; the raw content items kept
    while they fit in the same budget (an item that does not fit is replaced by a note saying what was left out)."""
    items: list[dict[str, Any]] = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in result.content]
    text = "\n".join(_content_text(item) for item in items)
    truncated = len(text) > max_chars
    if truncated:
        text = text[:max_chars]
    kept: list[dict[str, Any]] = []
    budget = max_chars
    for item in items:
        size = len(str(item))
        if size <= budget:
            kept.append(item)
            budget -= size
            continue
        truncated = True
        if item.get("type") == "text" and budget > 0:
            kept.append({**item, "text": str(item.get("text", ""))[:budget]})
            budget = 0
        else:
            kept.append({"type": "text", "text": f"[{item.get('type')} content left out: over the output limit]"})
    structured = result.structured_content
    if structured is not None and len(str(structured)) > max_chars:
        structured, truncated = None, True
    return ToolResult(
        text=text,
        is_error=bool(result.is_error),
        content=kept,
        structured_content=structured,
        truncated=truncated,
    )

"""MCP tools as OpenAI function tools: names OpenAI accepts (``^[a-zA-Z0-9_-]{1,64}$``), unique within one request,
readable by the model (``<server>__<tool>``), and a lookup from each name back to the server and tool.

A name is built from the server's display name and the tool's name, each reduced to the allowed characters. Where
that is too long, or two tools would get the same name, a short hash of the original pair is added, so the names are
stable for the same servers and tools.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from backend.mcp.schemas import McpTool, ToolRef

MAX_NAME = 64
SERVER_PART = 20
_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9_-]+")
MAX_DESCRIPTION = 1024


def _clean(text: str, fallback: str) -> str:
    cleaned = _NOT_ALLOWED.sub("_", text).strip("_")
    return cleaned or fallback


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:8]


def function_name(server_name: str, server_id: str, tool: str) -> str:
    base = f"{_clean(server_name, 'mcp')[:SERVER_PART]}__{_clean(tool, 'tool')}"
    if len(base) <= MAX_NAME and base == f"{server_name[:SERVER_PART]}__{tool}":
        return base
    # Cut (or changed) names get a hash of what they stand for, so that two never meet by the cut.
    suffix = "_" + _digest(server_id, tool)
    return base[: MAX_NAME - len(suffix)] + suffix


def parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's input schema as OpenAI function parameters (an object schema, always)."""
    if schema.get("type") != "object":
        return {"type": "object", "properties": {}}
    return {k: v for k, v in schema.items() if k not in ("$schema", "title")} | {
        "properties": schema.get("properties") or {}
    }


def select(tools: Iterable[McpTool], selected: Iterable[str] | None) -> list[McpTool]:
    """The tools ``selected`` names: each entry a server id (all its tools) or ``<server id>/<tool name>``; None:
    all of them. Entries that match nothing are skipped."""
    if selected is None:
        return list(tools)
    wanted = set(selected)
    return [t for t in tools if t.server_id in wanted or f"{t.server_id}/{t.name}" in wanted]


def openai_tools(tools: Iterable[McpTool]) -> tuple[list[dict[str, Any]], dict[str, ToolRef]]:
    """OpenAI ``tools`` entries for these MCP tools, and the lookup from each function name to its tool."""
    definitions: list[dict[str, Any]] = []
    lookup: dict[str, ToolRef] = {}
    for tool in tools:
        name = function_name(tool.server_name, tool.server_id, tool.name)
        if name in lookup:  # two servers of one display name, or names that clean to the same text
            suffix = "_" + _digest(tool.server_id, tool.name)
            name = name[: MAX_NAME - len(suffix)] + suffix
        lookup[name] = ToolRef(tool.server_id, tool.name)
        description = f"{tool.description} (tool '{tool.name}' of MCP server '{tool.server_name}')".strip()
        definitions.append(
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": description[:MAX_DESCRIPTION],
                    "parameters": parameters(tool.input_schema),
                },
            }
        )
    return definitions, lookup

"""The pure parts of backend/mcp: OpenAI function names and their lookup, and how a tool's result is bounded."""

from __future__ import annotations

import re

import mcp_types as types

from backend.mcp.client import describe, tool_result
from backend.mcp.schemas import McpTool, ToolRef
from backend.mcp.tool_names import function_name, openai_tools, select

OPENAI_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def tool(server_id: str, server_name: str, name: str, schema: dict | None = None) -> McpTool:
    return McpTool(
        server_id=server_id,
        server_name=server_name,
        name=name,
        description=f"does {name}",
        input_schema=schema if schema is not None else {"type": "object", "properties": {"x": {"type": "integer"}}},
    )


def test_plain_names_read_server_then_tool() -> None:
    assert function_name("weather", "mcp_1", "forecast") == "weather__forecast"


def test_every_name_is_one_openai_accepts_and_leads_back_to_its_tool() -> None:
    tools = [
        tool("mcp_1", "Wetter & Klima (EU)", "get.forecast/daily"),
        tool("mcp_2", "x" * 100, "y" * 200),
        tool("mcp_3", "???", "ünïcödé"),
        tool("mcp_4", "weather", "forecast"),
        tool("mcp_5", "weather", "forecast"),  # same display name on another server
        tool("mcp_6", "weather", "fore cast"),  # cleans to a name like another's
        tool("mcp_6", "weather", "fore_cast"),
    ]
    definitions, lookup = openai_tools(tools)
    names = [d["function"]["name"] for d in definitions]
    assert all(OPENAI_NAME.match(n) for n in names), names
    assert len(set(names)) == len(tools)
    assert [lookup[n] for n in names] == [ToolRef(t.server_id, t.name) for t in tools]
    assert names[3] == "weather__forecast" and names[4] != names[3]


def test_names_are_stable() -> None:
    tools = [tool("mcp_2", "x" * 100, "y" * 200), tool("mcp_3", "a b", "c d")]
    assert openai_tools(tools)[0] == openai_tools(tools)[0]


def test_definitions_are_function_tools_with_object_parameters() -> None:
    definitions, _ = openai_tools([tool("mcp_1", "s", "t"), tool("mcp_1", "s", "u", schema={"type": "string"})])
    first, second = definitions
    assert first["type"] == "function"
    assert first["function"]["parameters"] == {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert "does t" in first["function"]["description"] and "'s'" in first["function"]["description"]
    assert second["function"]["parameters"] == {"type": "object", "properties": {}}


def result(*content: types.ContentBlock, structured: object = None, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=list(content), structured_content=structured, is_error=error)


def test_a_result_within_the_limit_is_kept_whole() -> None:
    image = types.ImageContent(data="aGVsbG8=", mime_type="image/png")
    kept = tool_result(result(types.TextContent(text="one"), image, structured={"a": 1}), 1000)
    assert kept.text == "one\n[image (image/png)]" and not kept.truncated and not kept.is_error
    assert kept.content == [
        {"type": "text", "text": "one"},
        {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
    ]
    assert kept.structured_content == {"a": 1}


def test_a_long_result_is_cut_and_says_so() -> None:
    image = types.ImageContent(data="A" * 5000, mime_type="image/png")
    cut = tool_result(result(types.TextContent(text="x" * 3000), image, error=True), 1000)
    assert cut.truncated and cut.is_error and len(cut.text) == 1000
    assert cut.content[0] == {"type": "text", "text": "x" * 1000}
    assert cut.content[1] == {"type": "text", "text": "[image content left out: over the output limit]"}


def test_failures_read_as_one_sentence() -> None:
    group = BaseExceptionGroup("outer", [ExceptionGroup("inner", [ConnectionRefusedError("refused")])])
    assert describe(group) == "cannot connect: refused"
    assert describe(TimeoutError()) == "no answer in time"
    assert describe(RuntimeError("x"), status=401) == "the server answered HTTP 401"


def test_a_selection_names_whole_servers_or_single_tools() -> None:
    tools = [tool("mcp_1", "a", "x"), tool("mcp_1", "a", "y"), tool("mcp_2", "b", "x"), tool("mcp_3", "c", "z")]
    assert select(tools, None) == tools
    assert select(tools, []) == []
    chosen = select(tools, ["mcp_1", "mcp_2/x", "mcp_3/nothing", "mcp_9"])
    assert [(t.server_id, t.name) for t in chosen] == [("mcp_1", "x"), ("mcp_1", "y"), ("mcp_2", "x")]

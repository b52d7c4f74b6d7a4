"""A small real MCP server built with the ``mcp`` SDK, for the MCP tests.

Run over stdio (what a hosted MCP server of LISA runs): ``python -m tests.servers.mcp_tools``.
Run over streamable HTTP: ``python -m tests.servers.mcp_tools --transport http --host 127.0.0.1 --port N``; the MCP
endpoint is ``/mcp`` and ``GET /health`` answers 200. With ``--require-header NAME=VALUE`` every MCP request must
carry that header (401 otherwise), so a test can tell that the headers LISA keeps sealed do reach the server.
``--tools add,echo`` keeps only the tools named (the contract run's server offers no crash and no slow tool).

Tools: ``add(a, b)``, ``echo(text)``, ``fail(message)`` (fails with that message), ``slow(seconds)`` (sleeps, then answers),
``big(chars)`` (a long answer), ``env(name)`` (whether an environment variable is set, and its length — never its
value) and ``crash()`` (the process exits at once, as a crashing server would).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("lisa-test-tools", instructions="Tools for LISA's MCP tests.")


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Say the text back.")
def echo(text: str) -> str:
    return text


@server.tool(description="Always fails with the message given.")
def fail(message: str = "this tool always fails") -> str:
    raise ToolError(message)


@server.tool(description="Sleep for some seconds, then answer.")
async def slow(seconds: float = 5.0) -> str:
    await asyncio.sleep(seconds)
    return f"slept {seconds}s"


@server.tool(description="A long answer of the given number of characters.")
def big(chars: int = 100_000) -> str:
    return ("0123456789" * (chars // 10 + 1))[:chars]


@server.tool(description="Whether an environment variable is set, and its length (never its value).")
def env(name: str) -> dict[str, Any]:
    value = os.environ.get(name)
    return {"set": value is not None, "length": len(value or "")}


@server.tool(description="Exit the server process at once (a crash).")
def crash() -> str:
    os._exit(3)


def http_app(require: tuple[str, str] | None) -> Any:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse

    @server.custom_route("/health", methods=["GET"])
    async def health(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = server.streamable_http_app()
    if require is None:
        return inner
    name, expected = require[0].lower().encode(), require[1].encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/mcp"):
            given = dict(scope["headers"]).get(name)
            if given != expected:
                await JSONResponse({"error": "missing or wrong " + require[0]}, status_code=401)(scope, receive, send)
                return
        await inner(scope, receive, send)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--require-header", default=None, help="NAME=VALUE every MCP request must carry")
    parser.add_argument("--tools", default=None, help="comma-separated: offer only these tools")
    args = parser.parse_args()
    if args.tools:
        keep = set(args.tools.split(","))
        for name in ("add", "echo", "fail", "slow", "big", "env", "crash"):
            if name not in keep:
                server.remove_tool(name)
    if args.transport == "stdio":
        server.run("stdio")
        return
    import uvicorn

    require = tuple(args.require_header.split("=", 1)) if args.require_header else None
    uvicorn.run(http_app(require), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

"""MCP: registered MCP servers (global and personal, streamable HTTP and hosted stdio) and their tools, reached with
the official ``mcp`` SDK (docs/mcp.md)."""

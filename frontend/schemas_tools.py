"""Typed results of the backend's MCP tool list and session images, as the app reads them."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from frontend.schemas import Result


class McpTool(Result):
    server_id: str
    server_name: str
    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)

    @property
    def selection(self) -> str:
        """How a turn names it in ``tools``: ``<server id>/<tool>``."""
        return f"{self.server_id}/{self.name}"


class McpServerError(Result):
    server_id: str
    server_name: str
    error: str


class McpToolList(Result):
    tools: list[McpTool] = Field(default_factory=list)
    errors: list[McpServerError] = Field(default_factory=list)


class SessionImage(Result):
    id: str
    session_id: str
    model: str
    prompt: str
    url: str = Field(description="The session image route; the browser fetches it with its own session.")


class ImageGeneration(Result):
    user_message_id: str
    assistant_message_id: str
    images: list[SessionImage]

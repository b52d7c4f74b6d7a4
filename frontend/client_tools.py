"""The backend calls of the chat tab's tools, images and model comparison (over HTTP, as the signed-in user):
functions taking the tab's ``BackendClient``, so that the shared client stays small."""

from __future__ import annotations

from typing import Any, Literal

from frontend.client import BackendClient, BackendError
from frontend.schemas_tools import ImageGeneration, McpToolList

ToolMode = Literal["safe", "autopilot"]


async def mcp_tools(client: BackendClient) -> McpToolList:
    """The MCP tools this user may offer a model (``GET /api/mcp/tools``; unreachable servers are listed apart)."""
    return McpToolList.model_validate((await client._request("GET", "/api/mcp/tools")).json())


async def decide_tool_call(client: BackendClient, session_id: str, call_id: str, approve: bool) -> None:
    """Approves or denies a call waiting in a safe-mode turn (404: not this user's; 409: already decided)."""
    await client._request("POST", f"/api/sessions/{session_id}/tool-calls/{call_id}", json={"approve": approve})


async def generate_images(
    client: BackendClient, session_id: str, model: str, prompt: str, n: int = 1, size: str | None = None
) -> ImageGeneration:
    """Images from an imagegen model, kept with the session (``POST /api/sessions/{id}/images``)."""
    body: dict[str, Any] = {"model": model, "prompt": prompt, "n": n, **({"size": size} if size else {})}
    response = await client._request("POST", f"/api/sessions/{session_id}/images", json=body)
    return ImageGeneration.model_validate(response.json())


async def image_models(client: BackendClient) -> list[str]:
    """Ids of the imagegen models in service (the model library; an empty list when it is closed to the user)."""
    try:
        models = await client.registry_models()
    except BackendError as exc:
        if exc.status != 403:
            raise
        return []
    return [m.id for m in models if m.type == "imagegen" and m.status == "InService"]


def tool_fields(tools: list[str] | None, mode: str | None) -> dict[str, Any]:
    """The turn's ``tools`` and ``tool_mode``: nothing when no tool is picked (the session's own setting holds)."""
    if not tools:
        return {}
    return {"tools": list(tools), "tool_mode": "autopilot" if mode == "autopilot" else "safe"}

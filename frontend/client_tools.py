"""The backend calls of the chat tab's tools, images and model comparison (over HTTP, as the signed-in user):
functions taking the tab's ``BackendClient``, so that the shared client stays small."""

from __future__ import annotations

import re
from typing import Any, Literal

import httpx
from fastapi.responses import JSONResponse, Response

from frontend.client import BackendClient, BackendError, Credential
from frontend.schemas_tools import ImageGeneration, McpToolList

ToolMode = Literal["safe", "autopilot"]
RESOURCE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
IMAGE_HEADERS = ("Cache-Control", "X-Content-Type-Options", "Content-Security-Policy", "Content-Disposition")


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


async def proxy_image(http: httpx.AsyncClient, session_cookie: str | None, session_id: str, image_id: str) -> Response:
    """For the app on its own (frontend/standalone.py): the backend's session image, fetched as the browser's user
    (its backend session), so that the chat's ``/api/sessions/.../images/...`` links work on the app's address."""
    if not session_cookie:
        return JSONResponse({"detail": "not signed in"}, status_code=401)
    if not (RESOURCE_ID.match(session_id) and RESOURCE_ID.match(image_id)):
        return JSONResponse({"detail": "image not found"}, status_code=404)
    client = BackendClient(http, Credential(session_id=session_cookie))
    try:
        response = await client._request("GET", f"/api/sessions/{session_id}/images/{image_id}")
    except BackendError as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    headers = {name: response.headers[name] for name in IMAGE_HEADERS if name in response.headers}
    return Response(response.content, media_type=response.headers.get("content-type"), headers=headers)

"""The app on its own (frontend/standalone.py) serves the chat's image links: ``/api/sessions/{id}/images/{id}``
on the app's address, fetched from the backend as the browser's user."""

from __future__ import annotations

import re

import httpx
from fastapi.responses import JSONResponse, Response

from frontend.client import BackendClient, BackendError, Credential

RESOURCE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
IMAGE_HEADERS = ("Cache-Control", "X-Content-Type-Options", "Content-Security-Policy", "Content-Disposition")


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

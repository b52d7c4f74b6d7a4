"""The chat tab's calls beyond ``frontend/client.py``: a turn with any body (regenerate, edit-and-resend, RAG), the
branch shown, RAG repositories and collections, documents in a session's context and their summaries, projects,
Markdown export, import and share links. Functions of a ``BackendClient``: the same user, the same credential."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from frontend.client import BackendClient, BackendError, error_detail
from frontend.schemas import Session, SessionSummary
from frontend.schemas_chat import Collection, ContextDocument, ContextPreview, Project, Repository, ShareLink
from frontend.sse import ChatEvent, parse_events

UNSET: Any = object()  # parent_id not given: the turn goes after the session's active leaf


async def _stream(client: BackendClient, path: str, body: dict[str, Any]) -> AsyncIterator[tuple[str, str]]:
    """A POST answered with server-sent events, as raw ``(event name, data)`` frames."""
    headers = {**client.credential.headers(), "Accept": "text/event-stream"}
    try:
        async with client.http.stream("POST", path, json=body, headers=headers) as response:
            if response.status_code >= 400:
                await response.aread()
                raise BackendError(response.status_code, error_detail(response))
            name, data = "", list[str]()
            async for line in response.aiter_lines():
                if line == "":
                    if data:
                        yield name, "\n".join(data)
                    name, data = "", []
                elif not line.startswith(":"):
                    key, _, value = line.partition(":")
                    if key == "event":
                        name = value.strip()
                    elif key == "data":
                        data.append(value.removeprefix(" "))
            if data:
                yield name, "\n".join(data)
    except httpx.TransportError as exc:
        raise BackendError(503, f"the stream broke off ({type(exc).__name__})") from exc


async def turn(
    client: BackendClient,
    session_id: str,
    content: str | None,
    parent_id: str | None = UNSET,
    **fields: Any,
) -> AsyncIterator[ChatEvent]:
    """One turn with the whole body of ``POST /api/sessions/{id}/messages``: ``content`` and ``parent_id`` (a new
    question under a message, ``None`` for a new first one; without content, a regenerate), and the other fields
    (``model``, ``arguments``, ``rag``, ...; ``None`` values are not sent)."""
    body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None and v != [] and v != {}}
    if content is not None:
        body["content"] = content
    if parent_id is not UNSET:
        body["parent_id"] = parent_id

    async def lines() -> AsyncIterator[str]:
        async for name, data in _stream(client, f"/api/sessions/{session_id}/messages", body):
            if name:
                yield f"event: {name}"
            yield f"data: {data}"
            yield ""

    async for event in parse_events(lines()):
        yield event


async def show_branch(client: BackendClient, session_id: str, leaf_id: str) -> Session:
    """Shows the branch through ``leaf_id`` (continued by its newest descendants)."""
    response = await client._request("PATCH", f"/api/sessions/{session_id}", json={"active_leaf_id": leaf_id})
    return Session.model_validate(response.json())


async def move_to_project(client: BackendClient, session_id: str, project_id: str | None) -> None:
    await client._request("PATCH", f"/api/sessions/{session_id}", json={"project_id": project_id})


# --- RAG ------------------------------------------------------------------------------------------------------
async def repositories(client: BackendClient) -> list[Repository]:
    """The repositories the user may see (every page)."""
    found: list[Repository] = []
    cursor: str | None = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = (await client._request("GET", "/api/repositories", params=params)).json()
        found += [Repository.model_validate(r) for r in page["data"]]
        if not (cursor := page.get("next_cursor")):
            return found


async def collections(client: BackendClient, repository_id: str) -> list[Collection]:
    response = await client._request("GET", f"/api/repositories/{repository_id}/collections")
    return [Collection.model_validate(c) for c in response.json()["data"]]


# --- documents in context -------------------------------------------------------------------------------------
async def upload_documents(
    client: BackendClient, session_id: str, files: list[tuple[str, bytes]]
) -> list[ContextDocument]:
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
    response = await client._request("POST", f"/api/sessions/{session_id}/documents", files=parts)
    return [ContextDocument.model_validate(d) for d in response.json()["data"]]


async def context_documents(client: BackendClient, session_id: str) -> list[ContextDocument]:
    response = await client._request("GET", f"/api/sessions/{session_id}/documents", params={"limit": 100})
    return [ContextDocument.model_validate(d) for d in response.json()["data"]]


async def delete_document(client: BackendClient, session_id: str, document_id: str) -> None:
    await client._request("DELETE", f"/api/sessions/{session_id}/documents/{document_id}")


async def context_preview(client: BackendClient, session_id: str, model: str) -> ContextPreview:
    response = await client._request("GET", f"/api/sessions/{session_id}/context", params={"model": model})
    return ContextPreview.model_validate(response.json())


async def summarize(
    client: BackendClient, session_id: str, document_id: str, model: str, max_tokens: int | None = None
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The summary's events: ``plan``, ``progress`` (one per request), then ``summary`` or ``error``."""
    body: dict[str, Any] = {"model": model, **({"max_tokens": max_tokens} if max_tokens else {})}
    async for name, data in _stream(client, f"/api/sessions/{session_id}/documents/{document_id}/summary", body):
        payload = json.loads(data)
        yield name, payload if isinstance(payload, dict) else {"value": payload}


# --- projects, export, import, share --------------------------------------------------------------------------
async def projects(client: BackendClient) -> list[Project]:
    response = await client._request("GET", "/api/projects", params={"limit": 100})
    return [Project.model_validate(p) for p in response.json()["data"]]


async def create_project(client: BackendClient, name: str) -> Project:
    return Project.model_validate((await client._request("POST", "/api/projects", json={"name": name})).json())


async def delete_project(client: BackendClient, project_id: str) -> None:
    await client._request("DELETE", f"/api/projects/{project_id}")


async def sessions_in(client: BackendClient, project_id: str | None, q: str | None) -> list[SessionSummary]:
    params = {"limit": 50, **({"project_id": project_id} if project_id else {}), **({"q": q} if q else {})}
    page = (await client._request("GET", "/api/sessions", params=params)).json()
    return [SessionSummary.model_validate(s) for s in page["data"]]


async def import_session(client: BackendClient, export: bytes, project_id: str | None = None) -> Session:
    try:
        body = json.loads(export)
    except ValueError:
        raise BackendError(400, "the file is not a JSON export (it does not parse as JSON)") from None
    params = {"project_id": project_id} if project_id else {}
    response = await client._request("POST", "/api/sessions/import", json=body, params=params)
    return Session.model_validate(response.json())


async def share(client: BackendClient, session_id: str) -> ShareLink:
    return ShareLink.model_validate((await client._request("POST", f"/api/sessions/{session_id}/share")).json())


async def revoke_share(client: BackendClient, session_id: str) -> None:
    await client._request("DELETE", f"/api/sessions/{session_id}/share")

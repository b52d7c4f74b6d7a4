"""/api/sessions: one's own chat sessions (create, list and search, read, change, delete, export, import, share).

Another user's session does not exist for the caller (404), on every route. The chat itself (a turn, streamed) is
in backend/api/routes/chat.py; read-only share links are read through /api/shared (backend/api/routes/shared.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel

from backend.api.deps import CurrentUser, Paging, ServicesDep, requires
from backend.api.openapi import errors
from backend.api.routes.documents import content_disposition
from backend.chat.features import check_settings, shows_metadata, without_metadata
from backend.chat.schemas import (
    MessagePublic,
    ResourceId,
    SessionCreate,
    SessionPage,
    SessionPublic,
    SessionUpdate,
    ShareLink,
)
from backend.chat.store import SEARCH_MAX
from backend.chat.transfer import SessionExport, SessionImporter, export_json, export_markdown
from backend.configuration.features import Feature

router = APIRouter(prefix="/api/sessions", tags=["sessions"])


class SessionsDeleted(BaseModel):
    deleted: int


class ExportFormat(StrEnum):
    json = "json"
    markdown = "markdown"


EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": SessionExport,
        "description": "JSON (every branch, importable) or Markdown (the active branch), as 'format' says.",
        "content": {"text/markdown": {"schema": {"type": "string"}}},
    },
    **errors(404),
}


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(400, 403, 404, 409))
async def create_session(body: SessionCreate, user: CurrentUser, services: ServicesDep) -> SessionPublic:
    """``assistant_id`` starts the session from an assistant the caller may see (404 otherwise). Fields a feature
    toggle keeps from the caller are refused (403 naming it)."""
    await check_settings(services.configuration, user, body)
    return await services.chat.create(user, body)


@router.get("")
async def list_sessions(
    user: CurrentUser,
    services: ServicesDep,
    page: Paging,
    q: Annotated[
        str | None, Query(min_length=1, max_length=SEARCH_MAX, description="Words in the title or any message.")
    ] = None,
    project_id: Annotated[ResourceId | None, Query(description="Only the sessions of this project.")] = None,
) -> SessionPage:
    """One's sessions, most recently active first."""
    return await services.chat.page(user, page, q, project_id)


@router.delete("", responses=errors(403), dependencies=[requires(Feature.delete_session_history)])
async def delete_all_sessions(user: CurrentUser, services: ServicesDep) -> SessionsDeleted:
    """Deletes every session of the caller (and their messages)."""
    return SessionsDeleted(deleted=await services.chat.delete_all(user))


@router.post("/import", status_code=status.HTTP_201_CREATED, responses=errors(400, 403, 404, 413))
async def import_session_export(
    body: SessionExport,
    user: CurrentUser,
    services: ServicesDep,
    project_id: Annotated[ResourceId | None, Query(description="Put the imported session in this project.")] = None,
) -> SessionPublic:
    """A JSON export (GET .../export?format=json) as a new session of the caller: all of it, or nothing. What it
    names (model, templates, assistant, repositories, MCP servers) must be visible to the caller (404), and the
    feature toggles must allow its settings and documents (403)."""
    importer = SessionImporter(services.chat, services.configuration, services.mcp.store, services.context.documents)
    session_id = await importer.run(user, body, project_id)
    return await services.chat.get(user, session_id)


@router.get("/{session_id}", responses=errors(404))
async def get_session(session_id: str, user: CurrentUser, services: ServicesDep) -> SessionPublic:
    """The session with its active branch; each message lists its alternatives (``siblings``). Without the
    ``view_meta_data`` feature the messages' metadata is left out."""
    session = await services.chat.get(user, session_id)
    if await shows_metadata(services.configuration, user):
        return session
    stripped = without_metadata([m.model_dump() for m in session.messages])
    return session.model_copy(update={"messages": [MessagePublic.model_validate(m) for m in stripped]})


@router.patch("/{session_id}", responses=errors(400, 403, 404))
async def update_session(
    session_id: str, body: SessionUpdate, user: CurrentUser, services: ServicesDep
) -> SessionPublic:
    await check_settings(services.configuration, user, body)
    return await services.chat.update(user, session_id, body)


@router.delete(
    "/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(403, 404),
    dependencies=[requires(Feature.delete_session_history)],
)
async def delete_session(session_id: str, user: CurrentUser, services: ServicesDep) -> None:
    await services.chat.delete(user, session_id)


@router.get("/{session_id}/export", response_class=Response, responses=EXPORT_RESPONSES)
async def export_session(
    session_id: str,
    user: CurrentUser,
    services: ServicesDep,
    format: Annotated[ExportFormat, Query(description="json or markdown.")] = ExportFormat.json,
) -> Response:
    store = services.chat.store
    row = await store.session(user.username, session_id)
    messages: Sequence[Mapping[Any, Any]] = await store.messages(session_id)
    if not await shows_metadata(services.configuration, user):
        messages = without_metadata(messages)
    if format == ExportFormat.markdown:
        disposition = content_disposition(f"{row['title']}.md")
        return Response(
            export_markdown(row, messages),
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": disposition},
        )
    documents = await services.context.documents.exported(session_id)
    body = export_json(row, messages, documents).model_dump_json().encode()
    disposition = content_disposition(f"{row['title']}.json")
    return Response(body, media_type="application/json", headers={"Content-Disposition": disposition})


@router.post("/{session_id}/share", status_code=status.HTTP_201_CREATED, responses=errors(404))
async def share_session(session_id: str, user: CurrentUser, services: ServicesDep) -> ShareLink:
    """A read-only link (a new one replaces the previous). Readable by signed-in users who may see every model
    and RAG repository the session used."""
    return await services.chat.share(user, session_id)


@router.delete("/{session_id}/share", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def unshare_session(session_id: str, user: CurrentUser, services: ServicesDep) -> None:
    """Revokes the share link: it answers 404 from now on."""
    await services.chat.unshare(user, session_id)

"""/api/sessions/{id}/documents: documents in a session's context (upload, list, get, delete) and their summaries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import StreamingResponse

from backend.api.deps import CurrentUser, Paging, ServicesDep, requires
from backend.api.openapi import errors, multipart_files_body
from backend.chat.context_docs import check_type
from backend.chat.context_schemas import (
    ContextDocumentList,
    ContextDocumentPage,
    ContextDocumentPublic,
    SummaryRequest,
)
from backend.configuration.features import Feature
from backend.rag.uploads import UploadLimits, receive_upload

router = APIRouter(prefix="/api/sessions/{session_id}/documents", tags=["chat context"])

UPLOAD_BODY = multipart_files_body()  # the form the upload route reads itself, as a stream
SUMMARY_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: plan, progress (one per request), then summary (or error).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=UPLOAD_BODY,
    responses=errors(400, 403, 404, 409, 413),
    dependencies=[requires(Feature.upload_context_docs)],
)
async def upload_context_documents(
    session_id: str, request: Request, user: CurrentUser, services: ServicesDep
) -> ContextDocumentList:
    """Files stream to temporary files under the caps (413), are parsed in the parser processes, and only their
    text is kept. A name already in the session replaces that document."""
    documents, settings = services.context.documents, services.settings
    await documents.check_session(user, session_id)
    limits = UploadLimits(
        settings.context_max_file_bytes,
        settings.context_max_file_bytes * settings.context_max_upload_files,
        settings.context_max_upload_files,
    )
    received = await receive_upload(request.headers.get("content-type"), request.stream(), limits, None, check_type)
    try:
        return ContextDocumentList(data=await documents.upload(user, session_id, received.files))
    finally:
        received.discard()


@router.get("", responses=errors(404))
async def list_context_documents(
    session_id: str, user: CurrentUser, services: ServicesDep, page: Paging
) -> ContextDocumentPage:
    """Oldest first: the order in which they join the prompt."""
    return await services.context.documents.page(user, session_id, page)


@router.get("/{document_id}", responses=errors(404))
async def get_context_document(
    session_id: str, document_id: str, user: CurrentUser, services: ServicesDep
) -> ContextDocumentPublic:
    return await services.context.documents.get(user, session_id, document_id)


@router.delete("/{document_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_context_document(session_id: str, document_id: str, user: CurrentUser, services: ServicesDep) -> None:
    await services.context.documents.delete(user, session_id, document_id)


@router.post(
    "/{document_id}/summary",
    response_class=StreamingResponse,
    responses={**SUMMARY_STREAM, **errors(400, 403, 404)},
    dependencies=[requires(Feature.document_summarization)],
)
async def summarize_context_document(
    session_id: str, document_id: str, body: SummaryRequest, user: CurrentUser, services: ServicesDep
) -> StreamingResponse:
    """Summarise the document with a model that has the ``summarization`` feature (map-reduce when it is longer
    than the model's context window); progress streams as server-sent events and the summary is kept on the
    document. Refusals (404, 400) come before the stream starts."""
    summaries = services.context.summaries
    job = await summaries.prepare(user, session_id, document_id, body)
    return StreamingResponse(
        summaries.stream(job),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

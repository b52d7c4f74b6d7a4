"""/api/repositories/{id}/...: uploads and bulk ingestion (as jobs), the document library, job progress."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from backend.api.deps import CurrentUser, Paging, RagAdminUser, ServicesDep, requires
from backend.api.openapi import errors, multipart_files_body
from backend.configuration.features import Feature
from backend.errors import BadRequest
from backend.rag.schemas import Chunking, DocumentPage, DocumentPublic, IngestRequest, JobPage, JobPublic
from backend.rag.uploads import UploadLimits, receive_upload
from backend.text import refuse_unstorable

router = APIRouter(prefix="/api/repositories/{repository_id}", tags=["documents"])
# Feature toggles (docs/configuration.md); admins and RAG admins are exempt from both.
UPLOADS = [requires(Feature.upload_rag_docs)]
LIBRARY = [requires(Feature.show_rag_library)]

UPLOAD_BODY = multipart_files_body(  # the form the upload route reads itself, as a stream
    tags={"type": "string", "description": "Comma-separated tags for every chunk."},
    chunking={"type": "string", "description": "JSON chunking override, if the collection allows it."},
)


def _parse_chunking(raw: str | None) -> Chunking | None:
    if not raw:
        return None
    try:
        return Chunking.model_validate(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise BadRequest(
            f'\'chunking\' must be a JSON object like {{"strategy": "fixed", "size": 512}}: {exc}'
        ) from exc


def _parse_tags(raw: str | None) -> list[str]:
    tags = [t.strip() for t in (raw or "").split(",") if t.strip()]
    if len(tags) > 50 or any(len(t) > 128 for t in tags):
        raise BadRequest("at most 50 tags of at most 128 characters")
    try:
        return [refuse_unstorable(t) for t in tags]
    except ValueError as exc:
        raise BadRequest(f"tags: {exc}") from exc


@router.post(
    "/collections/{collection_id}/documents",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=UPLOAD_BODY,
    responses=errors(400, 404, 413),
    dependencies=UPLOADS,
)
async def upload_documents(
    repository_id: str, collection_id: str, request: Request, user: CurrentUser, services: ServicesDep
) -> JobPublic:
    """Files stream to temporary files as they arrive, under the per-file, per-upload and quota caps (413)."""
    jobs, settings = services.rag.jobs, services.settings
    await jobs.check_upload_target(user, repository_id, collection_id)
    limits = UploadLimits(settings.rag_max_file_bytes, settings.rag_max_upload_bytes, settings.rag_max_upload_files)
    allowance = await jobs.allowance(user, repository_id, collection_id)
    received = await receive_upload(request.headers.get("content-type"), request.stream(), limits, allowance)
    try:
        tags, chunking = _parse_tags(received.fields.get("tags")), _parse_chunking(received.fields.get("chunking"))
        return await jobs.upload(user, repository_id, collection_id, received.files, tags, chunking)
    finally:
        received.discard()


@router.post("/collections/{collection_id}/ingest", status_code=status.HTTP_202_ACCEPTED, responses=errors(404, 502))
async def ingest_sources(
    repository_id: str, collection_id: str, body: IngestRequest, user: RagAdminUser, services: ServicesDep
) -> JobPublic:
    return await services.rag.jobs.bulk(user, repository_id, collection_id, body)


@router.get("/jobs", responses=errors(404))
async def list_jobs(
    repository_id: str, user: CurrentUser, services: ServicesDep, page: Paging, collection: str | None = None
) -> JobPage:
    """Newest first."""
    return await services.rag.jobs.page(user, repository_id, page, collection_id=collection)


@router.get("/jobs/{job_id}", responses=errors(404))
async def get_job(repository_id: str, job_id: str, user: CurrentUser, services: ServicesDep) -> JobPublic:
    return await services.rag.jobs.get(user, repository_id, job_id)


@router.post("/jobs/{job_id}/cancel", responses=errors(404, 409))
async def cancel_job(repository_id: str, job_id: str, user: CurrentUser, services: ServicesDep) -> JobPublic:
    return await services.rag.jobs.cancel(user, repository_id, job_id)


@router.get("/documents", responses=errors(404), dependencies=LIBRARY)
async def list_documents(
    repository_id: str,
    user: CurrentUser,
    services: ServicesDep,
    page: Paging,
    collection: str | None = None,
    source: str | None = None,
) -> DocumentPage:
    return await services.rag.documents.page(user, repository_id, page, collection_id=collection, source=source)


@router.get("/documents/{document_id}", responses=errors(404), dependencies=LIBRARY)
async def get_document(
    repository_id: str, document_id: str, user: CurrentUser, services: ServicesDep
) -> DocumentPublic:
    return await services.rag.documents.get(user, repository_id, document_id)


def content_disposition(name: str) -> str:
    """RFC 6266: the name in UTF-8 (``filename*``), and an ASCII approximation for clients that lack it."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in ascii_name).strip() or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='!#$&+-.^_`|~')}"


@router.get("/documents/{document_id}/content", response_class=Response, responses=errors(404), dependencies=LIBRARY)
async def download_document(repository_id: str, document_id: str, user: CurrentUser, services: ServicesDep) -> Response:
    doc, size, parts = await services.rag.documents.original(user, repository_id, document_id)
    return StreamingResponse(
        parts,
        media_type=doc.content_type,
        headers={"Content-Disposition": content_disposition(doc.name), "Content-Length": str(size)},
    )


@router.delete("/documents/{document_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403, 404))
async def delete_document(repository_id: str, document_id: str, user: CurrentUser, services: ServicesDep) -> None:
    await services.rag.documents.delete(user, repository_id, document_id)

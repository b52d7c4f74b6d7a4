"""/api/repositories/{id}/...: uploads and bulk ingestion (as jobs), the document library, job progress."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Form, Query, Response, UploadFile, status
from pydantic import ValidationError

from backend.api.deps import CurrentUser, RagAdminUser, ServicesDep
from backend.errors import BadRequest, PayloadTooLarge
from backend.rag.jobs import Upload
from backend.rag.schemas import Chunking, DocumentPage, DocumentPublic, IngestRequest, JobPage, JobPublic

router = APIRouter(prefix="/api/repositories/{repository_id}", tags=["documents"])
READ_BLOCK = 1024 * 1024


async def _read_limited(file: UploadFile, limit: int) -> bytes:
    data = bytearray()
    while block := await file.read(READ_BLOCK):
        data += block
        if len(data) > limit:
            raise PayloadTooLarge(f"{file.filename}: over the limit of {limit} bytes")
    return bytes(data)


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
    return tags


@router.post("/collections/{collection_id}/documents", status_code=status.HTTP_202_ACCEPTED)
async def upload_documents(
    repository_id: str,
    collection_id: str,
    user: CurrentUser,
    services: ServicesDep,
    files: list[UploadFile],
    tags: Annotated[str | None, Form(description="Comma-separated tags for every chunk.")] = None,
    chunking: Annotated[str | None, Form(description="JSON chunking override, if the collection allows it.")] = None,
) -> JobPublic:
    limit = services.settings.rag_max_file_bytes
    uploads = [Upload(f.filename or "", await _read_limited(f, limit)) for f in files]
    return await services.rag.jobs.upload(
        user, repository_id, collection_id, uploads, _parse_tags(tags), _parse_chunking(chunking)
    )


@router.post("/collections/{collection_id}/ingest", status_code=status.HTTP_202_ACCEPTED)
async def ingest_sources(
    repository_id: str, collection_id: str, body: IngestRequest, user: RagAdminUser, services: ServicesDep
) -> JobPublic:
    return await services.rag.jobs.bulk(user, repository_id, collection_id, body)


@router.get("/jobs")
async def list_jobs(
    repository_id: str,
    user: CurrentUser,
    services: ServicesDep,
    collection: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> JobPage:
    return await services.rag.jobs.page(user, repository_id, collection_id=collection, limit=limit, cursor=cursor)


@router.get("/jobs/{job_id}")
async def get_job(repository_id: str, job_id: str, user: CurrentUser, services: ServicesDep) -> JobPublic:
    return await services.rag.jobs.get(user, repository_id, job_id)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(repository_id: str, job_id: str, user: CurrentUser, services: ServicesDep) -> JobPublic:
    return await services.rag.jobs.cancel(user, repository_id, job_id)


@router.get("/documents")
async def list_documents(
    repository_id: str,
    user: CurrentUser,
    services: ServicesDep,
    collection: str | None = None,
    source: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> DocumentPage:
    return await services.rag.documents.page(
        user, repository_id, collection_id=collection, limit=limit, cursor=cursor, source=source
    )


@router.get("/documents/{document_id}")
async def get_document(
    repository_id: str, document_id: str, user: CurrentUser, services: ServicesDep
) -> DocumentPublic:
    return await services.rag.documents.get(user, repository_id, document_id)


@router.get("/documents/{document_id}/content", response_class=Response)
async def download_document(repository_id: str, document_id: str, user: CurrentUser, services: ServicesDep) -> Response:
    doc, content = await services.rag.documents.original(user, repository_id, document_id)
    quoted = doc.name.replace('"', "")
    return Response(
        content,
        media_type=doc.content_type,
        headers={"Content-Disposition": f'attachment; filename="{quoted}"'},
    )


@router.delete("/documents/{document_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_document(repository_id: str, document_id: str, user: CurrentUser, services: ServicesDep) -> None:
    await services.rag.documents.delete(user, repository_id, document_id)

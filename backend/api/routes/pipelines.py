"""/api/repositories/{id}/pipelines: automatic ingestion from a server folder or an S3 prefix (admins, RAG admins).

A pipeline runs as its owner (``created_by``), with the owner's rights at each sync; when they lapse it stops."""

from __future__ import annotations

from fastapi import APIRouter, status

from backend.api.deps import Paging, RagAdminUser, ServicesDep
from backend.api.openapi import errors
from backend.rag.pipeline_schemas import PipelineCreate, PipelinePage, PipelinePublic, PipelineUpdate
from backend.rag.schemas import JobPublic

router = APIRouter(prefix="/api/repositories/{repository_id}/pipelines", tags=["pipelines"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(400, 404, 502))
async def create_pipeline(
    repository_id: str, body: PipelineCreate, user: RagAdminUser, services: ServicesDep
) -> PipelinePublic:
    return await services.rag.pipelines.create(user, repository_id, body)


@router.get("", responses=errors(404))
async def list_pipelines(repository_id: str, user: RagAdminUser, services: ServicesDep, page: Paging) -> PipelinePage:
    return await services.rag.pipelines.page(user, repository_id, page)


@router.get("/{pipeline_id}", responses=errors(404))
async def get_pipeline(
    repository_id: str, pipeline_id: str, user: RagAdminUser, services: ServicesDep
) -> PipelinePublic:
    return await services.rag.pipelines.get(user, repository_id, pipeline_id)


@router.patch("/{pipeline_id}", responses=errors(400, 404, 502))
async def update_pipeline(
    repository_id: str, pipeline_id: str, body: PipelineUpdate, user: RagAdminUser, services: ServicesDep
) -> PipelinePublic:
    return await services.rag.pipelines.update(user, repository_id, pipeline_id, body)


@router.delete("/{pipeline_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_pipeline(repository_id: str, pipeline_id: str, user: RagAdminUser, services: ServicesDep) -> None:
    await services.rag.pipelines.delete(user, repository_id, pipeline_id)


@router.post("/{pipeline_id}/run", responses=errors(400, 404, 409, 502, 503))
async def run_pipeline(
    repository_id: str, pipeline_id: str, user: RagAdminUser, services: ServicesDep
) -> JobPublic | None:
    """Syncs now: the ingestion job for what changed at the source, or null when nothing did."""
    return await services.rag.pipelines.run(user, repository_id, pipeline_id)

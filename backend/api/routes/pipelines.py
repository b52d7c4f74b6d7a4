"""/api/repositories/{id}/pipelines: automatic ingestion from a server folder or an S3 prefix (admins, RAG admins).

A pipeline runs as its owner (``created_by``), with the owner's rights at each sync; when they lapse it stops."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from backend.api.deps import RagAdminUser, ServicesDep
from backend.rag.pipeline_schemas import PipelineCreate, PipelinePage, PipelinePublic, PipelineUpdate
from backend.rag.schemas import JobPublic

router = APIRouter(prefix="/api/repositories/{repository_id}/pipelines", tags=["pipelines"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_pipeline(
    repository_id: str, body: PipelineCreate, user: RagAdminUser, services: ServicesDep
) -> PipelinePublic:
    return await services.rag.pipelines.create(user, repository_id, body)


@router.get("")
async def list_pipelines(
    repository_id: str,
    user: RagAdminUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> PipelinePage:
    return await services.rag.pipelines.page(user, repository_id, limit=limit, cursor=cursor)


@router.get("/{pipeline_id}")
async def get_pipeline(
    repository_id: str, pipeline_id: str, user: RagAdminUser, services: ServicesDep
) -> PipelinePublic:
    return await services.rag.pipelines.get(user, repository_id, pipeline_id)


@router.patch("/{pipeline_id}")
async def update_pipeline(
    repository_id: str, pipeline_id: str, body: PipelineUpdate, user: RagAdminUser, services: ServicesDep
) -> PipelinePublic:
    return await services.rag.pipelines.update(user, repository_id, pipeline_id, body)


@router.delete("/{pipeline_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_pipeline(repository_id: str, pipeline_id: str, user: RagAdminUser, services: ServicesDep) -> None:
    await services.rag.pipelines.delete(user, repository_id, pipeline_id)


@router.post("/{pipeline_id}/run")
async def run_pipeline(
    repository_id: str, pipeline_id: str, user: RagAdminUser, services: ServicesDep
) -> JobPublic | None:
    """Syncs now: the ingestion job for what changed at the source, or null when nothing did."""
    return await services.rag.pipelines.run(user, repository_id, pipeline_id)

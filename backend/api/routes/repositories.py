"""/api/repositories: vector-store repositories, their collections, and search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from backend.api.deps import CurrentUser, Paging, RagAdminUser, ServicesDep
from backend.api.openapi import errors
from backend.rag.schemas import (
    CollectionCreate,
    CollectionList,
    CollectionPublic,
    CollectionUpdate,
    RepositoryCreate,
    RepositoryPage,
    RepositoryPublic,
    RepositoryUpdate,
    SearchResult,
)
from backend.rag.search import SearchParams

router = APIRouter(prefix="/api/repositories", tags=["repositories"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(400, 409, 502, 504))
async def create_repository(body: RepositoryCreate, user: RagAdminUser, services: ServicesDep) -> RepositoryPublic:
    return await services.rag.repositories.create(body, user, services.settings.embedding_model_id)


@router.get("")
async def list_repositories(user: CurrentUser, services: ServicesDep, page: Paging) -> RepositoryPage:
    return await services.rag.repositories.page(user, page)


@router.get("/{repository_id}", responses=errors(404))
async def get_repository(repository_id: str, user: CurrentUser, services: ServicesDep) -> RepositoryPublic:
    return await services.rag.repositories.get(repository_id, user)


@router.patch("/{repository_id}", responses=errors(400, 404))
async def update_repository(
    repository_id: str, body: RepositoryUpdate, user: RagAdminUser, services: ServicesDep
) -> RepositoryPublic:
    return await services.rag.repositories.update(repository_id, body, user)


@router.delete("/{repository_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404, 502))
async def delete_repository(repository_id: str, user: RagAdminUser, services: ServicesDep) -> None:
    await services.rag.repositories.delete(repository_id, user)


@router.get("/{repository_id}/collections", responses=errors(404))
async def list_collections(repository_id: str, user: CurrentUser, services: ServicesDep) -> CollectionList:
    return CollectionList(data=await services.rag.repositories.collections(repository_id, user))


@router.post(
    "/{repository_id}/collections", status_code=status.HTTP_201_CREATED, responses=errors(400, 404, 409, 502, 504)
)
async def create_collection(
    repository_id: str, body: CollectionCreate, user: RagAdminUser, services: ServicesDep
) -> CollectionPublic:
    return await services.rag.repositories.create_collection(repository_id, body, user)


@router.get("/{repository_id}/collections/{collection_id}", responses=errors(404))
async def get_collection(
    repository_id: str, collection_id: str, user: CurrentUser, services: ServicesDep
) -> CollectionPublic:
    return await services.rag.repositories.collection(repository_id, collection_id, user)


@router.patch("/{repository_id}/collections/{collection_id}", responses=errors(400, 404))
async def update_collection(
    repository_id: str, collection_id: str, body: CollectionUpdate, user: RagAdminUser, services: ServicesDep
) -> CollectionPublic:
    return await services.rag.repositories.update_collection(repository_id, collection_id, body, user)


@router.delete(
    "/{repository_id}/collections/{collection_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404, 502)
)
async def delete_collection(repository_id: str, collection_id: str, user: RagAdminUser, services: ServicesDep) -> None:
    await services.rag.repositories.delete_collection(repository_id, collection_id, user)


@router.get("/{repository_id}/search", responses=errors(400, 404, 502, 504))
async def search(
    repository_id: str,
    user: CurrentUser,
    services: ServicesDep,
    query: Annotated[str, Query(min_length=1, max_length=4000)],
    top_k: Annotated[int, Query(ge=1, le=100)] = 5,
    collection: Annotated[list[str] | None, Query(description="Repeat to search several; default: all.")] = None,
    hybrid_weight: Annotated[float | None, Query(ge=0.0, le=1.0, description="Weight of full-text relevance.")] = None,
    score_threshold: float | None = None,
    tag: Annotated[list[str] | None, Query(description="Chunks carrying any of these tags.")] = None,
    source: Annotated[list[str] | None, Query(description="Chunks of these sources only.")] = None,
    rerank: bool | None = None,
    pages: Annotated[
        bool, Query(description="Rank by page (several strong chunks raise a page) and cap chunks per page.")
    ] = True,
) -> SearchResult:
    params = SearchParams(
        query=query,
        top_k=top_k,
        collections=collection or [],
        hybrid_weight=hybrid_weight,
        score_threshold=score_threshold,
        tags=tag or [],
        sources=source or [],
        rerank=rerank,
        pages=pages,
    )
    return await services.rag.search.search(user, repository_id, params)

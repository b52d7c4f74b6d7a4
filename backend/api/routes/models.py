"""/api/models: the model registry (reads for everyone who may see a model, writes for admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from backend.api.deps import AdminUser, CurrentUser, ServicesDep
from backend.registry.schemas import ModelCreate, ModelPage, ModelPublic, ModelUpdate

router = APIRouter(prefix="/api/models", tags=["models"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_model(body: ModelCreate, admin: AdminUser, services: ServicesDep) -> ModelPublic:
    return await services.registry.create(body, actor=admin)


@router.get("")
async def list_models(
    user: CurrentUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> ModelPage:
    return await services.registry.page(user, limit=limit, cursor=cursor)


@router.get("/{model_id:path}")
async def get_model(model_id: str, user: CurrentUser, services: ServicesDep) -> ModelPublic:
    return await services.registry.get(model_id, user)


@router.patch("/{model_id:path}")
async def update_model(model_id: str, body: ModelUpdate, admin: AdminUser, services: ServicesDep) -> ModelPublic:
    return await services.registry.update(model_id, body, actor=admin)


@router.delete("/{model_id:path}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_model(model_id: str, admin: AdminUser, services: ServicesDep) -> None:
    await services.registry.delete(model_id, actor=admin)

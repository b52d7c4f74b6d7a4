"""/api/models: the model registry (reads for everyone who may see a model, writes for admins).

A model's ``status`` belongs to its lifecycle (start, stop, failure): requests never set it (422)."""

from __future__ import annotations

from fastapi import APIRouter, status

from backend.api.deps import AdminUser, CurrentUser, Paging, ServicesDep, requires
from backend.api.openapi import errors
from backend.configuration.features import Feature
from backend.registry.schemas import ModelCreate, ModelPage, ModelPublic, ModelUpdate

router = APIRouter(prefix="/api/models", tags=["models"])
# The model library (the toggle model_library; admins are exempt). /v1/models, which OpenAI clients pick a model
# from, stays open to everyone.
LIBRARY = [requires(Feature.model_library)]


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(400, 409))
async def create_model(body: ModelCreate, admin: AdminUser, services: ServicesDep) -> ModelPublic:
    return await services.registry.create(body, actor=admin)


@router.get("", dependencies=LIBRARY)
async def list_models(user: CurrentUser, services: ServicesDep, page: Paging) -> ModelPage:
    return await services.registry.page(user, page)


@router.get("/{model_id:path}", responses=errors(404), dependencies=LIBRARY)
async def get_model(model_id: str, user: CurrentUser, services: ServicesDep) -> ModelPublic:
    return await services.registry.get(model_id, user)


@router.patch("/{model_id:path}", responses=errors(400, 404))
async def update_model(model_id: str, body: ModelUpdate, admin: AdminUser, services: ServicesDep) -> ModelPublic:
    return await services.registry.update(model_id, body, actor=admin)


@router.delete("/{model_id:path}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_model(model_id: str, admin: AdminUser, services: ServicesDep) -> None:
    await services.registry.delete(model_id, actor=admin)

"""/api/assistants: assistant stacks (docs/assistants.md). Admins write; everyone reads the ones their groups allow
(any other answers 404)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from backend.api.deps import AdminUser, CurrentUser, Paging, ServicesDep
from backend.api.openapi import errors
from backend.assistants.schemas import AssistantCreate, AssistantPage, AssistantPublic, AssistantUpdate

router = APIRouter(prefix="/api/assistants", tags=["assistants"])

AssistantId = Annotated[str, Path(max_length=64, description="The assistant's id.")]


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(400, 409))
async def create_assistant(body: AssistantCreate, admin: AdminUser, services: ServicesDep) -> AssistantPublic:
    return await services.assistants.create(body, admin)


@router.get("")
async def list_assistants(user: CurrentUser, services: ServicesDep, page: Paging) -> AssistantPage:
    return await services.assistants.page(user, page)


@router.get("/{assistant_id}", responses=errors(404))
async def get_assistant(assistant_id: AssistantId, user: CurrentUser, services: ServicesDep) -> AssistantPublic:
    return await services.assistants.get(assistant_id, user)


@router.patch("/{assistant_id}", responses=errors(400, 404, 409))
async def update_assistant(
    assistant_id: AssistantId, body: AssistantUpdate, admin: AdminUser, services: ServicesDep
) -> AssistantPublic:
    return await services.assistants.update(assistant_id, body, admin)


@router.delete("/{assistant_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_assistant(assistant_id: AssistantId, admin: AdminUser, services: ServicesDep) -> None:
    await services.assistants.delete(assistant_id, admin)
